"""``gpufleet gpu-agent``: watch this pod's GPUs, export DCGM metrics, answer ``/health``.

The operator renders it as a sidecar next to each model server (docs/operator.md, "GPU
health"): ``--host $(POD_IP) --port 9400`` and the pool's thresholds. ``--source nvml``
(the default) reads the driver through pynvml; ``--source twin --twin-url URL`` reads a
simulator's GPU state (the dev cluster's pod runner sets it). ``--gpu-uuids-file`` names
the file where the model server lists the pod's GPUs (``gpufleet.podgpus``): the
operator always sets it, since NVML shows the sidecar every GPU of the node; without it
the agent judges every GPU it reads (a node or container of one pod's own).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from aiohttp import web

from gpufleet import cliargs, logsetup
from gpufleet.gpuagent import app, verdict
from gpufleet.gpuagent.readings import GpuSource

# dcgm-exporter's default listen address is :9400 (NVIDIA/dcgm-exporter README).
DEFAULT_PORT = 9400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    limits = verdict.Thresholds()
    parser.add_argument("--host", default="127.0.0.1", help="listen address (the pod IP)")
    parser.add_argument(
        "--port", type=cliargs.port, default=DEFAULT_PORT, help="metrics and /health"
    )
    parser.add_argument(
        "--interval", type=cliargs.positive_float, default=2.0, help="seconds between reads"
    )
    parser.add_argument(
        "--hostname", default="", help="the Hostname label (default: this machine's hostname)"
    )
    parser.add_argument(
        "--source",
        choices=("nvml", "twin"),
        default="nvml",
        help="read the GPUs through NVML, or a twin simulator's GPU port",
    )
    parser.add_argument("--twin-url", help="with --source twin: the simulator's GPU port URL")
    parser.add_argument("--gpu-uuids-file", type=Path,
                        help="judge only the GPUs whose UUIDs the model server lists here, "
                        "once it has (default: every GPU read)")  # fmt: skip
    parser.add_argument("--max-temperature", type=float, default=limits.max_temperature_c,
                        help="°C at which a GPU is unhealthy")  # fmt: skip
    parser.add_argument("--max-memory-percent", type=cliargs.positive_float,
                        default=limits.max_memory_percent,
                        help="framebuffer use at which a GPU is unhealthy")  # fmt: skip
    parser.add_argument("--max-uncorrectable-ecc", type=cliargs.non_negative_int,
                        default=limits.max_uncorrectable_ecc,
                        help="uncorrectable ECC errors a healthy GPU may have")  # fmt: skip
    parser.add_argument("--xid-hold-seconds", type=cliargs.non_negative_float,
                        default=limits.xid_hold_seconds,
                        help="how long a critical XID error keeps a GPU unhealthy")  # fmt: skip
    logsetup.add_arguments(parser)


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
    logsetup.configure(level=args.log_level, fmt=args.log_format)
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
        gpu_uuids_file=args.gpu_uuids_file,
    )
    web.run_app(
        app.create_app(settings, _opener(args)),
        host=args.host, port=args.port, access_log=None, print=None,
    )  # fmt: skip
    return 0
