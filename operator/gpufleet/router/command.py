"""``gpufleet router --config FILE [--host H] [--port P] [--log-level L]``.

Validates the config (exit 2 naming the bad key), then serves on uvloop until SIGINT or
SIGTERM; on either it stops accepting connections, marks itself draining and gives
requests in flight up to ``drainSeconds`` to finish.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvloop
from aiohttp import web

from gpufleet.router import app, config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="router config YAML")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        loaded = config.load(args.config)
        application = app.create_app(loaded)
    except config.ConfigError as exc:
        print(f"gpufleet router: invalid config: {exc}", file=sys.stderr)
        return 2
    print(f"gpufleet router: serving on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        application,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=loaded.drain_seconds,
        handler_cancellation=True,
        loop=uvloop.new_event_loop(),
    )
    return 0
