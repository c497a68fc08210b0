"""``gpufleet gpu-agent``: watch this pod's GPUs, export DCGM metrics, answer ``/health``.

The operator renders it as a sidecar next to each model server (docs/operator.md, "GPU
health"): ``--host $(POD_IP) --port 9400`` and the pool's thresholds. ``--source nvml``
(the default) reads the driver through pynvml; ``--source twin --twin-url URL`` reads a
simulator's GPU state (the dev cluster's pod runner sets it).
"""

from __future__ import annotations

import argparse
import logging
import socket

from aiohttp import web

from gpufleet.gpuagent import app, verdict
from gpufleet.gpuagent.readings import GpuSource

# dcgm-exporter's default listen address is :9400 (NVIDIA/dcgm-exporter README).
DEFAULT_PORT = 9400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    limits = verdict.Thresholds()
    parser.add_argument("--host", default="127.0.0.1", help="listen address (the pod IP)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="metrics and /health")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between reads")
    parser.add_argument("--hostname", default="", help="the Hostname label (the node's name)")
    parser.add_argument("--source", choices=("nvml", "twin"), default="nvml")
    parser.add_argument("--twin-url", help="with --source twin: the simulator's GPU port URL")
    parser.add_argument("--max-temperature", type=float, default=limits.max_temperature_c,
                        help="°C at which a GPU is unhealthy")  # fmt: skip
    parser.add_argument("--max-memory-percent", type=float, default=limits.max_memory_percent)
    parser.add_argument("--max-uncorrectable-ecc", type=int, default=limits.max_uncorrectable_ecc)
    parser.add_argument("--xid-hold-seconds", type=float, default=limits.xid_hold_seconds)
    parser.add_argument("--log-level", default="INFO")


def _limits(args: argparse.Namespace) -> verdict.Thresholds:
    return verdict.Thresholds(
        max_temperature_c=args.max_temperature,
        max_memory_percent=args.max_memory_percent,
        max_uncorrectable_ecc=args.max_uncorrectable_ecc,
        xid_hold_seconds=args.xid_hold_seconds,
    )


def _opener(args: argparse.Namespace) -> app.OpenSource:
    if args.source == "twin":
        from gpufleet.gpuagent.twinsource import TwinSource

        url = str(args.twin_url)
        return lambda: TwinSource(url)

    def open_nvml() -> GpuSource:
        from gpufleet.gpuagent.nvml import NvmlSource  # pynvml only where NVML is read

        return NvmlSource()

    return open_nvml


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.source == "twin" and not args.twin_url:
        print("gpufleet gpu-agent: --source twin needs --twin-url", flush=True)
        return 2
    if args.interval <= 0:
        print("gpufleet gpu-agent: --interval must be positive", flush=True)
        return 2
    settings = app.AgentSettings(
        interval_seconds=args.interval,
        hostname=args.hostname or socket.gethostname(),
        limits=_limits(args),
    )
    web.run_app(
        app.create_app(settings, _opener(args)),
        host=args.host, port=args.port, access_log=None, print=None,
    )  # fmt: skip
    return 0
