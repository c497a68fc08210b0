"""Operator at scale: N ModelPools x 2 variants on M KWOK GPU nodes, on a dedicated cluster.

The cluster runs without the twin's pod runner (``workloads=False``, as ``gpufleet dev
up --no-workloads``) and without Prometheus: KWOK plays the kubelet, so a pod costs
what it costs the control plane, not a simulator process (with the pod runner every
pod became one, and a few hundred filled the machine's memory). Every variant asks for
1..2 replicas, so gpufleet's autoscaler decides every pool each pass (without
Prometheus: within the bounds, so it keeps 1).

Measures the time from creating the pools until all are Ready, the API writes the
operator made per pool, its peak RSS, its writes during an idle minute (target 0), and
how long the autoscaler's passes over every pool took against its interval (from the
operator's log).
Writes are counted from kube-apiserver's ``apiserver_request_total`` (admin kubeconfig,
``/metrics``) before and after, restricted to what only the operator writes: apply,
patch, create and delete of Deployments, Services, PodDisruptionBudgets and
NetworkPolicies (not their status, which controllers write), the ModelPool status
subresource, and patches of pods themselves (the price and planned KV-cache
annotations; the scheduler binds and KWOK writes pods' status through subresources).
Events are counted apart (every component posts them). Prints a summary and writes JSON to
``bench/out/operator_scale.json``.

    .venv/bin/python bench/operator_scale.py --pools 1000 --nodes 500
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet.devcluster import build, nodes
from gpufleet.devcluster import cluster as clusters

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "gpufleet.io", "v1alpha1", "modelpools"
OPERATOR_WRITES = {
    ("deployments", ""), ("services", ""), ("poddisruptionbudgets", ""),
    ("networkpolicies", ""), ("modelpools", "status"), ("pods", ""),
}  # fmt: skip
WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT", "DELETE"}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_PASS = re.compile(r"autoscaler pass: (?P<pools>\d+) pools in (?P<seconds>[0-9.]+)s")


def write_counts(kubectl: list[str]) -> dict[str, float]:
    """Operator-attributable writes and all Event creations, from the apiserver's metrics."""
    text = subprocess.run([*kubectl, "get", "--raw", "/metrics"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    out = {"operator": 0.0, "events": 0.0} | {"/".join(k).strip("/"): 0.0 for k in OPERATOR_WRITES}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        key = (labels.get("resource", ""), labels.get("subresource", ""))
        if key in OPERATOR_WRITES and (key[0] != "pods" or labels.get("verb") == "PATCH"):
            out["operator"] += float(match["value"])
            out["/".join(key).strip("/")] += float(match["value"])
        elif key == ("events", ""):
            out["events"] += float(match["value"])
    return out


def pool(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": f"pool-{index:04d}"},
        "spec": {
            "model": {"name": f"m{index}", "source": "hf://bench/llama-8b",
                      "catalogName": "llama-3.1-8b", "maxModelLen": 8192},
            "variants": [{"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 2},
                         {"name": "a100", "gpu": "A100-40GB", "minReplicas": 1, "maxReplicas": 2}],
        },
    }  # fmt: skip


def ready_count(api: client.CustomObjectsApi, namespace: str) -> int:
    items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions", []))
        for i in items
    )  # fmt: skip


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def autoscaler_passes(log: Path, pools: int) -> list[float]:
    """Seconds of each autoscaler pass that decided every pool, from the operator's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [float(m["seconds"]) for m in _PASS.finditer(text) if int(m["pools"]) == pools]


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench-operator-{os.getpid()}"
    half = args.nodes // 2
    fleet = (
        f"nodeGroups:\n- {{name: h100, count: {half}, gpu: H100-80GB, gpusPerNode: 8}}\n"
        f"- {{name: a100, count: {args.nodes - half}, gpu: A100-40GB, gpusPerNode: 8}}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        fleet_file = Path(tmp) / "fleet.yaml"
        fleet_file.write_text(fleet)
        started = time.monotonic()
        handle = clusters.up(name, fleet_file=str(fleet_file), prometheus=False,
                             workloads=False, progress=lambda _m: None)  # fmt: skip
        print(f"cluster with {args.nodes} KWOK nodes up in {time.monotonic() - started:.0f}s")
        log = args.log.open("wb")
        op: subprocess.Popen[bytes] | None = None
        try:
            kubectl = [str(build.binary_path("kubectl")), f"--kubeconfig={handle.kubeconfig}"]
            subprocess.run([*kubectl, "apply", "--server-side", "-f", str(ROOT / "crds")],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            crd = "crd/modelpools.gpufleet.io"
            subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                            crd], check=True, capture_output=True, timeout=90)  # fmt: skip
            subprocess.run([*kubectl, "create", "namespace", "bench"], check=True,
                           capture_output=True)  # fmt: skip
            argv = [str(Path(sys.executable).parent / "gpufleet"), "operator",
                    "--kubeconfig", str(handle.kubeconfig), "-n", "bench",
                    "--resync-seconds", str(args.resync_seconds), "--liveness", "none",
                    "--autoscale-seconds", str(args.autoscale_seconds)]  # fmt: skip
            op = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(3)
            with nodes.api_client(handle.kubeconfig) as api:
                pools = client.CustomObjectsApi(api)
                before = write_counts(kubectl)
                t0 = time.monotonic()
                for i in range(args.pools):
                    pools.create_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL, pool(i))
                created = time.monotonic() - t0
                deadline = t0 + args.timeout
                ready = 0
                while time.monotonic() < deadline:
                    ready = ready_count(pools, "bench")
                    if ready == args.pools:
                        break
                    print(
                        f"  {time.monotonic() - t0:5.0f}s  {ready}/{args.pools} Ready", flush=True
                    )
                    time.sleep(5.0)
                all_ready = time.monotonic() - t0
                time.sleep(5)  # let the last status writes and watch echoes settle
                settled = write_counts(kubectl)
                time.sleep(args.idle_seconds)
                idle = write_counts(kubectl)
            rss = peak_rss_mib(op.pid)
        finally:
            if op is not None:
                op.terminate()
                op.wait(timeout=30)
            log.close()
            clusters.down(name, progress=lambda _m: None)
    passes = autoscaler_passes(args.log, args.pools)
    return {
        "pools": args.pools,
        "variants_per_pool": 2,
        "nodes": args.nodes,
        "pools_ready": ready,
        "create_seconds": round(created, 1),
        "all_ready_seconds": round(all_ready, 1),
        "operator_writes": settled["operator"] - before["operator"],
        "operator_writes_per_pool": round(
            (settled["operator"] - before["operator"]) / args.pools, 2
        ),
        "operator_writes_by_resource": {
            k: settled[k] - before[k] for k in sorted(settled) if k not in ("operator", "events")
        },
        "events_all_components": settled["events"] - before["events"],
        "idle_seconds": args.idle_seconds,
        "idle_operator_writes": idle["operator"] - settled["operator"],
        "idle_operator_writes_by_resource": {
            k: idle[k] - settled[k] for k in sorted(idle) if k not in ("operator", "events")
        },
        "operator_peak_rss_mib": round(rss, 1),
        "resync_seconds": args.resync_seconds,
        "autoscale_seconds": args.autoscale_seconds,
        "autoscaler_full_passes": len(passes),
        "autoscaler_pass_median_seconds": round(statistics.median(passes), 2) if passes else None,
        "autoscaler_pass_max_seconds": round(max(passes), 2) if passes else None,
        "cpu_cores": os.cpu_count(),
    }


def main() -> int:
    # A SIGTERM (e.g. from `timeout`) must still stop the operator and the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--resync-seconds", type=float, default=30.0)
    parser.add_argument("--autoscale-seconds", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--log", type=Path, default=ROOT / "bench" / "out" / "operator_scale.log")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "operator_scale.json")
    args = parser.parse_args()
    result = run(args)
    for key, value in result.items():
        print(f"{key:28} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["pools_ready"] == result["pools"] else 1


if __name__ == "__main__":
    sys.exit(main())
