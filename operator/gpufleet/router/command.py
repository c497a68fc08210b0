"""``gpufleet router --config FILE [--host H] [--port P] [--log-level L] [--log-format F]``.

Validates the config (exit 2 naming the bad key), then serves on uvloop until SIGINT or
SIGTERM; on either it answers ``/readyz`` with 503 at once and gives requests in flight
up to ``drainSeconds`` to finish (``serving``). Every log record passes the
``redaction`` filter: no API key or prompt text reaches the log at any level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvloop

from gpufleet import cliargs, logsetup
from gpufleet.router import app, config, redaction, serving


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="router config YAML")
    parser.add_argument("--host", default="127.0.0.1", help="listen address")
    parser.add_argument("--port", type=cliargs.port, default=8080, help="listen port")
    logsetup.add_arguments(parser, level="WARNING")


def run(args: argparse.Namespace) -> int:
    logsetup.configure(level=args.log_level, fmt=args.log_format)
    redaction.install()
    try:
        loaded = config.load(args.config)
        application = app.create_app(loaded)
    except config.ConfigError as exc:
        print(f"gpufleet router: invalid config: {exc}", file=sys.stderr)
        return 2
    uvloop.run(serving.serve(application, host=args.host, port=args.port))
    return 0
