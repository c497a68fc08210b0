"""``gpufleet dev-cluster``: build, start, stop and inspect local control planes."""

from __future__ import annotations

import argparse
import sys

from gpufleet.devcluster import build, cluster, errors, processes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("build", help="build etcd, Kubernetes and KWOK from their Go modules (cached)")
    up = sub.add_parser("up", help="start a cluster and its KWOK GPU nodes")
    up.add_argument(
        "--name", default=cluster.DEFAULT_NAME, help="cluster name (default: %(default)s)"
    )
    up.add_argument(
        "--fleet", metavar="FILE", help="fleet file (YAML); default: the built-in mixed fleet"
    )
    down = sub.add_parser("down", help="stop a cluster and delete its files")
    down.add_argument(
        "--name", default=cluster.DEFAULT_NAME, help="cluster name (default: %(default)s)"
    )
    status = sub.add_parser(
        "status", help="say which clusters run and what each component is doing"
    )
    status.add_argument("--name", help="only this cluster")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status(name: str | None) -> int:
    names = [name] if name else cluster.names()
    if not names:
        print("no dev cluster is running")
        return 0
    for each in names:
        found = cluster.load(each)
        if found is None:
            print(f"cluster {each!r}: not running")
            continue
        state = "running" if cluster.is_running(found) else "degraded"
        print(f"cluster {each!r}: {state}  server {found.server}  kubeconfig {found.kubeconfig}")
        for proc in found.procs:
            print(
                f"  {proc.name:<24} {'up' if processes.alive(proc) else 'DOWN':<5} pid {proc.pid}"
            )
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "build":
            build.build_all(progress=_say)
            return 0
        if args.action == "up":
            started = cluster.up(args.name, fleet_file=args.fleet, progress=_say)
            print(f"export KUBECONFIG={started.kubeconfig}")
            return 0
        if args.action == "down":
            if not cluster.down(args.name, progress=_say):
                _say(f"cluster {args.name!r} is not running")
            return 0
        return _status(args.name)
    except errors.DevClusterError as exc:
        _say(f"gpufleet dev-cluster {args.action}: {exc}")
        return 1
