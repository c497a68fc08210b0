"""``make demo``: gpufleet's main job end to end on a local twin, as one command.

``python -m gpufleet.devcluster.demo [--name N]`` starts (or reuses) the dev cluster
with its pod runner and Prometheus, installs the CRDs and the operator's RBAC, runs the
operator as a Deployment (the pod runner runs it as a real process with its
ServiceAccount's token), applies the mixed-generation example pool and waits while its
simulated replicas load their weights, applies a RoutingPolicy from which the operator
deploys a cost-routing router (ConfigMap, least-privilege Role, Deployment, Service),
then sends a short traffic run through the router with ``gpufleet bench load`` and
prints goodput, TTFT/TPOT percentiles and, read from the router's ``/stats``, the
requests and output tokens per GPU generation and class (chart and JSON under
``bench/out/demo/``; the router's figures are the summary's ``generations``). Every
long step reports progress. ``make demo-down`` is ``gpufleet dev-cluster down``: it
stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet import labels
from gpufleet.devcluster import build, nodes, podstatus
from gpufleet.devcluster import cluster as clusters
from gpufleet.loadgen import report

ROOT = Path(__file__).resolve().parents[3]
POOL_FILE = ROOT / "examples" / "modelpool-llama-3.1-70b.yaml"
POOL, MODEL = "llama-70b", "meta-llama/Llama-3.1-70B-Instruct"
POLICY = "demo"
DEMO = ROOT / "examples" / "demo"


def say(message: str) -> None:
    print(message, flush=True)


class Demo:
    """The steps of the demo against one running cluster."""

    def __init__(self, cluster: clusters.Cluster, api: client.ApiClient) -> None:
        self.cluster = cluster
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.kubectl_argv = [
            str(build.binary_path("kubectl")),
            f"--kubeconfig={cluster.kubeconfig}",
        ]

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([*self.kubectl_argv, *args], input=stdin, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{done.stderr.strip()}")
        return done.stdout

    def wait(self, what: str, probe: Callable[[], str | None], *, timeout: float) -> None:
        """Poll ``probe`` (None = done, else a progress line) with a line every 5 s."""
        started = last = time.monotonic()
        while True:
            state = probe()
            elapsed = time.monotonic() - started
            if state is None:
                say(f"  {what}: done in {elapsed:.0f}s")
                return
            if elapsed > timeout:
                raise SystemExit(f"{what}: not done after {timeout:.0f}s ({state})")
            if time.monotonic() - last >= 5:
                say(f"  {what}: {state} ({elapsed:.0f}s)")
                last = time.monotonic()
            time.sleep(0.5)

    def pods_ready(self, namespace: str, selector: str) -> tuple[int, int, list[str]]:
        found = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        pods = [p.to_dict() for p in found]
        live = [p for p in pods if not p["metadata"].get("deletion_timestamp")]
        ready = [p for p in live if podstatus.ready_of(p.get("status"))]
        return len(ready), len(live), [str(p["status"]["pod_ip"]) for p in ready]

    def install_operator(self) -> None:
        say("== operator: CRDs, least-privilege RBAC, Deployment (run by the pod runner) ==")
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/modelpools.gpufleet.io", "crd/routingpolicies.gpufleet.io")  # fmt: skip
        self.kubectl("apply", "-f", str(DEMO / "operator.yaml"))
        self.kubectl("apply", "-f", str(ROOT / "deploy" / "rbac" / "operator-rbac.yaml"))
        selector = "app.kubernetes.io/name=gpufleet-operator"

        def operator_ready() -> str | None:
            ready, total, _ = self.pods_ready("gpufleet-system", selector)
            return None if ready else f"{ready}/{total} operator pods Ready"

        self.wait("operator Ready", operator_ready, timeout=120)

    def apply_pool(self) -> None:
        say(f"== ModelPool {POOL}: planned TP per generation, simulated replicas loading ==")
        secret = self.kubectl(
            "create",
            "secret",
            "generic",
            "hf-token",
            "--from-literal=token=demo",
            "--dry-run=client",
            "-o",
            "yaml",
        )
        self.kubectl("apply", "-f", "-", stdin=secret)
        self.kubectl("apply", "-f", str(POOL_FILE))

        def pool_ready() -> str | None:
            pool: Any = self.custom.get_namespaced_custom_object(
                "gpufleet.io", "v1alpha1", "default", "modelpools", POOL
            )
            variants = (pool.get("status") or {}).get("variants") or []
            cells = [f"{v['name']} {v.get('readyReplicas', 0)}/{v.get('desiredReplicas', 0)}"
                     for v in variants]  # fmt: skip
            ready = [c for c in (pool.get("status") or {}).get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"]  # fmt: skip
            return None if ready else "replicas ready " + (", ".join(cells) or "planning")

        self.wait(f"{POOL} Ready (weights loading)", pool_ready, timeout=600)
        say(
            self.kubectl(
                "get",
                "pods",
                "-l",
                f"{labels.POOL}={POOL}",
                "-o",
                "wide",
                "-L",
                labels.GPU,
                "-L",
                labels.TENSOR_PARALLEL_SIZE,
            )
        )

    def start_router(self) -> str:
        say(f"== RoutingPolicy {POLICY}: the operator deploys a cost router in front of {POOL} ==")
        text = (DEMO / "routingpolicy.yaml").read_text()
        text = text.replace("${PROMETHEUS_URL}", self.cluster.prometheus_url or "")
        self.kubectl("apply", "-f", "-", stdin=text)
        selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(POLICY).items())
        found: list[str] = []

        def router_ready() -> str | None:
            ready, total, ips = self.pods_ready("default", selector)
            found[:] = ips
            if not ready:
                return f"{ready}/{total} router pods Ready"
            policy: Any = self.custom.get_namespaced_custom_object(
                "gpufleet.io", "v1alpha1", "default", "routingpolicies", POLICY
            )
            status = policy.get("status") or {}
            applied = status.get("appliedGeneration")
            if applied != policy["metadata"]["generation"] or not status.get("readyEndpoints"):
                endpoints = status.get("readyEndpoints", 0)
                return f"router applied generation {applied}, {endpoints} endpoints"
            return None

        self.wait("router Ready with the policy applied", router_ready, timeout=180)
        say(self.kubectl("get", "routingpolicy", POLICY))
        say(self.kubectl("get", "all,configmap,role,rolebinding,serviceaccount", "-l",
                         selector))  # fmt: skip
        return f"http://{found[0]}:8080"

    def traffic(self, url: str, *, requests: int, rate: float) -> int:
        say(f"== traffic: {requests} requests at {rate:g}/s through the router at {url} ==")
        out = ROOT / "bench" / "out" / "demo"
        argv = [sys.executable, "-m", "gpufleet.cli", "bench", "load", "--target", url,
                "--model", MODEL, "--requests", str(requests), "--rate", f"{rate:g}",
                "--out-dir", str(out)]  # fmt: skip
        code = subprocess.run(argv, check=False).returncode
        self.routed(url, out / "summary.json")
        return code

    def routed(self, url: str, summary_path: Path) -> None:
        """Requests and output tokens per GPU generation and class, as the router counted
        them (its clients get no header naming the generation), into the summary."""
        with urllib.request.urlopen(url + "/stats", timeout=10) as response:
            served = json.loads(response.read()).get("served") or {}
        shares = report.generations_served(served)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary["generations"] = shares
        summary_path.write_text(json.dumps(summary, indent=2))
        say("== where the router sent them, per GPU generation (requests per class) ==")
        say("\n".join(report.render_generations(shares)) or "  none answered")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=clusters.DEFAULT_NAME, help="cluster name")
    parser.add_argument("--requests", type=int, default=60, help="requests in the traffic run")
    parser.add_argument("--rate", type=float, default=1.5, help="mean requests per second")
    args = parser.parse_args(argv)
    started = time.monotonic()
    say(f"== dev cluster {args.name!r}: control plane, KWOK GPU nodes, pod runner, Prometheus ==")
    cluster = clusters.up(args.name, progress=say)
    with nodes.api_client(cluster.kubeconfig) as api:
        demo = Demo(cluster, api)
        say(demo.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product",
                         "-L", "nvidia.com/gpu.count"))  # fmt: skip
        demo.install_operator()
        demo.apply_pool()
        url = demo.start_router()
        code = demo.traffic(url, requests=args.requests, rate=args.rate)
    say(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    say(f"pod processes: gpufleet dev-cluster status --name {args.name}")
    say("stop everything: make demo-down")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    if cluster.prometheus_url:
        print(f"export PROMETHEUS_URL={cluster.prometheus_url}")
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
