"""Dev-cluster fleet scale: how fast N KWOK GPU nodes become usable, and what they cost.

For each fleet size, a fresh local cluster is started with a one-node fleet (the
control plane alone, without Prometheus or the pod runner, which start only after the
nodes and watch pods), then a fleet of N GPU nodes spread evenly over every GPU
generation of the catalog is registered through the same code ``gpufleet dev-cluster
up`` runs for its fleet (``nodes.rollout``): all created, all Ready, all schedulable
(the node lifecycle controller's start-up taint gone). For each component the CPU
seconds it spent during registration, its CPU share in the idle minute right after (when
KWOK still syncs the pods of every node it has just taken over) and in a later idle
minute (the steady cost: KWOK renews every node's Lease), and its peak RSS, all from
``/proc``.
The cluster is stopped after each size. Prints a summary and writes JSON to
``bench/out/fleet_scale.json``.

    .venv/bin/python bench/fleet_scale.py --nodes 500 1000 5000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet.devcluster import cluster as clusters
from gpufleet.devcluster import fleet, nodes, readiness
from gpufleet.hardware import catalog

ROOT = Path(__file__).resolve().parents[1]
MAX_GROUP = 1000  # a fleet file's largest node group
SMALL_GPUS = {"A10G", "L4", "L40S"}  # 4 per node, as in the default fleet; the rest 8


def fleet_yaml(count: int) -> str:
    """``count`` GPU nodes, as even a split over the catalog's generations as it goes."""
    gens = list(catalog.GPUS)
    lines = ["nodeGroups:"]
    for i, gen in enumerate(gens):
        left = count // len(gens) + (1 if i < count % len(gens) else 0)
        part = 0
        while left > 0:
            size = min(left, MAX_GROUP)
            per_node = 4 if gen in SMALL_GPUS else 8
            lines.append(f"- {{name: {gen.lower()}-{part}, count: {size}, gpu: {gen}, "
                         f"gpusPerNode: {per_node}}}")  # fmt: skip
            left, part = left - size, part + 1
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_of(handle: clusters.Cluster) -> dict[str, float]:
    return {p.name: cpu_seconds(p.pid) for p in handle.procs}


def schedulable_count(kubeconfig: Path, wanted: set[str]) -> int:
    with nodes.api_client(kubeconfig) as api:
        raw: Any = client.CoreV1Api(api).list_node(_preload_content=False)
        items = json.loads(raw.data)["items"]
    tally = readiness.Tally(frozenset(wanted))
    tally.reset(items)
    return tally.counts().schedulable


def cpu_percent(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    return {k: round(100 * (after[k] - before[k]) / seconds, 1) for k in before}


def one_size(args: argparse.Namespace, count: int, tmp: Path) -> dict[str, Any]:
    name = f"bench-fleet-{os.getpid()}"
    tiny, big = tmp / "control-plane.yaml", tmp / f"fleet-{count}.yaml"
    tiny.write_text("nodeGroups:\n- {name: cpu, count: 1}\n")
    big.write_text(fleet_yaml(count))
    bodies = fleet.render_nodes(fleet.load(str(big)))
    started = time.monotonic()
    handle = clusters.up(
        name, fleet_file=str(tiny), prometheus=False, workloads=False, progress=lambda _m: None
    )
    control_plane = time.monotonic() - started
    try:
        before, own_before = cpu_of(handle), time.process_time()
        result = nodes.rollout(handle.kubeconfig, bodies, progress=print)
        during, own = cpu_of(handle), time.process_time() - own_before
        time.sleep(args.idle_seconds)
        idle = cpu_of(handle)
        time.sleep(args.settle_seconds)
        settled = cpu_of(handle)
        time.sleep(args.idle_seconds)
        steady = cpu_of(handle)
        still = schedulable_count(handle.kubeconfig, {b["metadata"]["name"] for b in bodies})
        rss = {p.name: round(peak_rss_mib(p.pid), 1) for p in handle.procs}
    finally:
        if args.logs is not None:
            shutil.copytree(handle.layout.logs, args.logs / f"{count}-nodes", dirs_exist_ok=True)
        clusters.down(name, progress=lambda _m: None)
    return {
        "nodes": count,
        "control_plane_seconds": round(control_plane, 1),
        "create_seconds": round(result.created_s, 1),
        "all_ready_seconds": round(result.ready_s, 1),
        "all_schedulable_seconds": round(result.schedulable_s, 1),
        "timeout_seconds": readiness.ready_timeout(count),
        "cpu_seconds_registering": {k: round(during[k] - before[k], 1) for k in before}
        | {"bench (client)": round(own, 1)},
        "idle_seconds": args.idle_seconds,
        "idle_cpu_percent_after_up": cpu_percent(during, idle, args.idle_seconds),
        "idle_cpu_percent_steady": cpu_percent(settled, steady, args.idle_seconds),
        "steady_window_starts_after_up_seconds": args.idle_seconds + args.settle_seconds,
        "schedulable_after_idle": still,
        "peak_rss_mib": rss,
    }


def main() -> int:
    # A SIGTERM (e.g. from `timeout`) must still stop the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[500, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--settle-seconds", type=float, default=120.0, help="between the two idle windows"
    )
    parser.add_argument("--logs", type=Path, help="copy each cluster's component logs here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "fleet_scale.json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.nodes:
            for _ in range(args.repeat):
                print(f"== {count} nodes", flush=True)
                runs.append(one_size(args, count, Path(tmp)))
                for key, value in runs[-1].items():
                    print(f"{key:28} {value}", flush=True)
    doc = {"cpu_cores": os.cpu_count(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(r["schedulable_after_idle"] == r["nodes"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
