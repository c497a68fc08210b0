"""The pod runner as a cluster component: its command line, argv and health URL.

``dev-cluster up`` starts ``python -m gpufleet.devcluster.twin --name N --port P …``
after the KWOK nodes are Ready (unless ``--no-workloads``), records it like the other
components and waits for ``/healthz``; ``down`` stops it (it stops its pods' processes)
and then any pod process a runner recorded, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gpufleet.devcluster import components

PODS_DIR = "pods"


def argv(
    name: str, *, port: int, speed: float = 1.0, load_seconds: float | None = None
) -> list[str]:
    """The runner's command line for cluster ``name``."""
    out = [sys.executable, "-m", "gpufleet.devcluster.twin", f"--name={name}",
           f"--port={port}", f"--speed={speed:g}"]  # fmt: skip
    if load_seconds is not None:
        out.append(f"--load-seconds={load_seconds:g}")
    return out


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/healthz"


def pods_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/pods"


def pods_root(layout: components.Layout) -> Path:
    return layout.root / PODS_DIR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpufleet.devcluster.twin",
        description="run the processes of the pods on a dev cluster's KWOK nodes",
    )
    parser.add_argument("--name", required=True, help="cluster name")
    parser.add_argument("--port", type=int, required=True, help="health and /pods port")
    parser.add_argument("--speed", type=float, default=1.0, help="simulators' --speed")
    parser.add_argument("--load-seconds", type=float, help="model-load time of every simulator")
    return parser


def main(args_list: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(args_list)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    from gpufleet.devcluster import cluster, nodes, podrunner

    layout = cluster.layout_for(args.name)
    found = cluster.load(args.name)
    if found is None:
        print(f"no dev cluster named {args.name!r} is recorded", file=sys.stderr)
        return 1
    settings = podrunner.Settings(
        pods_root=pods_root(layout),
        logs_root=layout.logs,
        pod_cidr=components.pod_cidr(args.name),
        server=found.server,
        ca=layout.pki.ca_cert,
        speed=args.speed,
        load_seconds=args.load_seconds,
    )
    with nodes.api_client(layout.admin_kubeconfig) as api:
        podrunner.main(api, settings, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
