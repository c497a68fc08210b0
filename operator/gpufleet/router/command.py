"""``gpufleet router --config FILE [--host H] [--port P] [--log-level L]``.

Validates the config (exit 2 naming the bad key), then serves on uvloop until SIGINT or
SIGTERM; on either it answers ``/readyz`` with 503 at once and gives requests in flight
up to ``drainSeconds`` to finish (``serving``). Every log record passes the
``redaction`` filter: no API key or prompt text reaches the log at any level.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvloop

from gpufleet.router import app, config, redaction, serving


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="router config YAML")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    redaction.install()
    try:
        loaded = config.load(args.config)
        application = app.create_app(loaded)
    except config.ConfigError as exc:
        print(f"gpufleet router: invalid config: {exc}", file=sys.stderr)
        return 2
    uvloop.run(serving.serve(application, host=args.host, port=args.port))
    return 0
