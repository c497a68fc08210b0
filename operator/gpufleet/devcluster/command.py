"""``gpufleet dev-cluster``: build, start, stop and inspect local control planes."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from gpufleet import cliargs, tables
from gpufleet.devcluster import build, cluster, errors, images, imagespec, processes, twin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build_parser = sub.add_parser(
        "build",
        help="build etcd, Kubernetes, KWOK and Prometheus from their Go modules (cached)",
    )
    build_parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=[c.name for c in build.components()],
        metavar="COMPONENT",
        help="build only this component (repeatable; default: all), e.g. prometheus",
    )
    built = sub.add_parser(
        "images",
        help="build gpufleet's images with buildah on a Debian base made here (no registry)",
    )
    built.add_argument(
        "--only",
        action="append",
        choices=[i.name for i in imagespec.IMAGES],
        default=[],
        help="build only this image; repeatable (default: all)",
    )
    built.add_argument(
        "--source",
        type=Path,
        default=Path.cwd(),
        help="the repository to build from (default: the current directory)",
    )
    up = sub.add_parser("up", help="start a cluster, its KWOK GPU nodes and Prometheus")
    up.add_argument(
        "--name", default=cluster.DEFAULT_NAME, help="cluster name (default: %(default)s)"
    )
    up.add_argument(
        "--fleet", metavar="FILE", help="fleet file (YAML); default: the built-in mixed fleet"
    )
    up.add_argument(
        "--no-prometheus",
        dest="prometheus",
        action="store_false",
        help="do not start Prometheus (it discovers and scrapes the cluster's pods)",
    )
    up.add_argument(
        "--no-workloads",
        dest="workloads",
        action="store_false",
        help="do not run pod processes: pods on KWOK nodes are Ready at once and nothing "
        "listens at their IPs (what KWOK alone does)",
    )
    up.add_argument(
        "--sim-speed",
        type=cliargs.positive_float,
        default=1.0,
        help="simulated time per wall second of every vLLM simulator (default: %(default)s)",
    )
    up.add_argument(
        "--load-seconds",
        type=cliargs.non_negative_float,
        help="model-load time of every simulator, in simulated seconds "
        "(default: weights per GPU / the generation's load bandwidth)",
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


def exports(started: cluster.Cluster) -> list[str]:
    """The shell lines ``up`` prints last on stdout: KUBECONFIG, then PROMETHEUS_URL."""
    lines = [f"export KUBECONFIG={started.kubeconfig}"]
    if started.prometheus_url is not None:
        lines.append(f"export PROMETHEUS_URL={started.prometheus_url}")
    return lines


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
        if found.prometheus_url is not None:
            print(f"  prometheus {found.prometheus_url}")
        for proc in found.procs:
            print(
                f"  {proc.name:<24} {'up' if processes.alive(proc) else 'DOWN':<5} pid {proc.pid}"
            )
        if found.ports.pod_runner is not None:
            print(_pod_table(found.ports.pod_runner))
    return 0


def _pod_table(port: int) -> str:
    """The pod runner's processes as a table (pod, IP:port, GPU, state, restarts)."""
    try:
        with urllib.request.urlopen(twin.pods_url(port), timeout=5) as resp:
            pods = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return f"  pod processes: the pod runner did not answer ({exc})"
    rows = [("POD", "ADDRESS", "GPU", "CONTAINER", "STATE", "PID", "RESTARTS")]
    for pod in pods:
        for c in pod["containers"]:
            address = f"{pod['ip']}:{c['port']}" if c["port"] else pod["ip"]
            state = "terminating" if pod["deleting"] else c["state"]
            rows.append((f"{pod['namespace']}/{pod['pod']}", address, pod["gpu"] or "-",
                         f"{c['name']} ({c['kind']})", state, str(c["pid"] or "-"),
                         str(c["restarts"])))  # fmt: skip
    if len(rows) == 1:
        return "  pod processes: none"
    return "\n".join(tables.aligned(rows, indent="  "))


def _images(source: Path, only: list[str]) -> int:
    if not (source / "images" / "gpufleet" / "Dockerfile").is_file():
        raise errors.DevClusterError(f"{source} is not a gpufleet repository (--source)")
    for image in images.build_images(source.resolve(), only=only, progress=_say):
        print(f"{image.reference}\t{images.size_mb(image.reference):.0f} MB")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "build":
            build.build_all(progress=_say, only=args.only)
            return 0
        if args.action == "images":
            return _images(args.source, args.only)
        if args.action == "up":
            started = cluster.up(
                args.name,
                fleet_file=args.fleet,
                prometheus=args.prometheus,
                workloads=args.workloads,
                sim_speed=args.sim_speed,
                load_seconds=args.load_seconds,
                progress=_say,
            )
            print("\n".join(exports(started)))
            return 0
        if args.action == "down":
            if not cluster.down(args.name, progress=_say):
                _say(f"cluster {args.name!r} is not running")
            return 0
        return _status(args.name)
    except errors.DevClusterError as exc:
        _say(f"gpufleet dev-cluster {args.action}: {exc}")
        return 1
