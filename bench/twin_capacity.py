"""How many simulated vLLM pods one machine holds, and how fast a scale-up serves.

On a dedicated dev cluster (pod runner on, Prometheus off, simulators at ``--speed 1``
with no model-load time so that only the twin's own overhead is timed) it:

1. scales a Deployment of ``vllm serve`` pods (Llama-3.1-8B, TP 1, on H100 KWOK nodes)
   to ``--pods`` replicas and waits until all are Ready;
2. measures every simulator process while idle for ``--idle-seconds``: resident and
   proportional memory (``/proc/PID/smaps_rollup``: PSS counts shared pages once) and
   CPU (``utime + stime`` deltas), per pod and in total;
3. drives ``--busy`` of them with ``gpufleet bench load`` for ``--busy-seconds`` and
   measures the same for the busy pods;
4. scales the Deployment up by one, ``--scale-ups`` times, and times each new pod from
   the scale request to Ready and to its first answered ``/v1/models``.

Prints a summary and writes ``bench/out/twin_capacity.json``. Targets: ≥ 50 idle pods
within 4 GiB, an idle pod < 0.5 % of a core.

    .venv/bin/python bench/twin_capacity.py --pods 50
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet.devcluster import cluster as clusters
from gpufleet.devcluster import nodes

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
NAME = "sim-8b"
MODEL = "llama-3.1-8b"
TICKS = os.sysconf("SC_CLK_TCK")


def _fleet(pods: int) -> str:
    count = max(1, -(-(pods + 8) // 8))
    return f"nodeGroups:\n- {{name: h100, count: {count}, gpu: H100-80GB, gpusPerNode: 8}}\n"


def _deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": NAME, "gpufleet.io/pool": NAME, "gpufleet.io/gpu": "H100-80GB",
              "gpufleet.io/tensor-parallel-size": "1"}  # fmt: skip
    container = {
        "name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "command": ["vllm", "serve"],
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", MODEL,
                 "--max-model-len", "8192", "--port", "8000"],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }  # fmt: skip
    return {
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"gpufleet.io/model": MODEL}},
                "spec": {
                    "containers": [container],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


def _ready_pods(core: client.CoreV1Api) -> dict[str, str]:
    """name -> IP of Ready, non-terminating pods."""
    out = {}
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector=f"app={NAME}").items:
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in pod.status.conditions or [])  # fmt: skip
        if ready and pod.metadata.deletion_timestamp is None:
            out[pod.metadata.name] = pod.status.pod_ip
    return out


def _wait(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout:.0f}s: {what}")


def _runner_pods(cluster: clusters.Cluster) -> dict[str, int]:
    """pod name -> simulator pid, from the pod runner."""
    from gpufleet.devcluster import twin

    assert cluster.ports.pod_runner is not None
    with urllib.request.urlopen(twin.pods_url(cluster.ports.pod_runner), timeout=5) as resp:
        pods = json.loads(resp.read())
    return {p["pod"]: c["pid"] for p in pods for c in p["containers"] if c["pid"]}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def _sample(pids: list[int], seconds: float) -> dict[str, float]:
    before = {p: _cpu_ticks(p) for p in pids}
    time.sleep(seconds)
    cpu = [(_cpu_ticks(p) - before[p]) / TICKS / seconds * 100 for p in pids]
    mem = [_memory_kib(p) for p in pids]
    rss = [r / 1024 for r, _ in mem]
    pss = [s / 1024 for _, s in mem]
    return {
        "pods": len(pids),
        "cpu_percent_of_core_per_pod_mean": sum(cpu) / len(cpu),
        "cpu_percent_of_core_per_pod_max": max(cpu),
        "cpu_percent_of_core_total": sum(cpu),
        "rss_mib_per_pod_mean": sum(rss) / len(rss),
        "pss_mib_per_pod_mean": sum(pss) / len(pss),
        "pss_mib_total": sum(pss),
        "rss_mib_total": sum(rss),
    }


def _busy(ips: list[str], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    loads = []
    for index, ip in enumerate(ips):
        argv = [sys.executable, "-m", "gpufleet.cli", "bench", "load",
                "--target", f"http://{ip}:8000", "--model", MODEL, "--rate", "4",
                "--requests", str(int(4 * seconds)), "--seed", str(index),
                "--out-dir", str(out / f"load-{index}"), "--quiet"]  # fmt: skip
        loads.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return loads


def _answers(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _scale_up(apps: client.AppsV1Api, core: client.CoreV1Api, replicas: int) -> dict[str, float]:
    before = set(_ready_pods(core))
    started = time.monotonic()
    apps.patch_namespaced_deployment_scale(NAME, NAMESPACE, {"spec": {"replicas": replicas}})

    def new_ready() -> dict[str, str]:
        return {n: ip for n, ip in _ready_pods(core).items() if n not in before}

    found = _wait("the new pod Ready", new_ready, 120)
    ready = time.monotonic() - started
    ip = next(iter(found.values()))
    _wait("the new pod answering", lambda: _answers(ip), 60)
    return {"to_ready_s": ready, "to_serving_s": time.monotonic() - started}


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench-twin-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        fleet_file = Path(tmp) / "fleet.yaml"
        fleet_file.write_text(_fleet(args.pods + args.scale_ups))
        started = time.monotonic()
        cluster = clusters.up(name, fleet_file=str(fleet_file), prometheus=False,
                              load_seconds=0.0, progress=print)  # fmt: skip
        print(f"cluster up in {time.monotonic() - started:.1f}s")
        try:
            with nodes.api_client(cluster.kubeconfig) as api:
                return _measure(args, cluster, api, Path(tmp))
        finally:
            clusters.down(name, progress=lambda _m: None)


def _measure(
    args: argparse.Namespace, cluster: clusters.Cluster, api: client.ApiClient, tmp: Path
) -> dict[str, Any]:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    _wait("default ServiceAccount", lambda: core.list_namespaced_service_account(NAMESPACE).items,
          30)  # fmt: skip
    started = time.monotonic()
    apps.create_namespaced_deployment(NAMESPACE, _deployment(args.pods))
    _wait(f"{args.pods} pods Ready", lambda: len(_ready_pods(core)) >= args.pods, 600)
    all_ready = time.monotonic() - started
    print(f"{args.pods} simulator pods Ready in {all_ready:.1f}s")
    pids = list(_runner_pods(cluster).values())
    time.sleep(5)  # let start-up work settle
    idle = _sample(pids, args.idle_seconds)
    print(f"idle: {json.dumps(idle, indent=1)}")
    ips = list(_ready_pods(core).values())[: args.busy]
    busy_pids = [pid for pod, pid in _runner_pods(cluster).items()
                 if _ready_pods(core).get(pod) in ips]  # fmt: skip
    loads = _busy(ips, args.busy_seconds, tmp)
    time.sleep(3)
    busy = _sample(busy_pids, args.busy_seconds - 6)
    for proc in loads:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    print(f"busy: {json.dumps(busy, indent=1)}")
    scale = [_scale_up(apps, core, args.pods + i + 1) for i in range(args.scale_ups)]
    for each in scale:
        print(f"scale-up: Ready {each['to_ready_s']:.2f}s, serving {each['to_serving_s']:.2f}s")
    return {"pods": args.pods, "all_ready_s": all_ready, "idle": idle, "busy": busy,
            "scale_up": scale}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--busy", type=int, default=4, help="pods driven with load")
    parser.add_argument("--busy-seconds", type=float, default=30.0)
    parser.add_argument("--scale-ups", type=int, default=5)
    args = parser.parse_args()
    result = run(args)
    out = ROOT / "bench" / "out" / "twin_capacity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
