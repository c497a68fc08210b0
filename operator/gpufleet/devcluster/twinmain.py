"""The pod runner's process: ``python -m gpufleet.devcluster.twinmain --name N --port P``.

It finds the recorded cluster ``N``, then runs every pod on its KWOK nodes as a local
process (``podrunner``) and serves ``/healthz`` and ``/pods`` on port ``P``; how the
cluster starts it is ``twin``. Exit status 1 when no cluster ``N`` is recorded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gpufleet.devcluster import cluster, components, nodes, podrunner, twin


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpufleet.devcluster.twinmain",
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
    layout = cluster.layout_for(args.name)
    found = cluster.load(args.name)
    if found is None:
        print(f"no dev cluster named {args.name!r} is recorded", file=sys.stderr)
        return 1
    settings = podrunner.Settings(
        pods_root=twin.pods_root(layout),
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
