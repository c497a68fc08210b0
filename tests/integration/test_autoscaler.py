"""gpufleet's autoscaler on the twin, with compressed time: simulators at the session
cluster's speed (10 simulated seconds per wall second, model loads of 2 s wall), an
operator deciding every second from the twin's Prometheus (scraped every 2 s), and
pools whose windows and rate limits are seconds.

Load is driven straight at one model-server pod (threads posting chat completions to
its IP): with ``maxNumSeqs`` 2 the rest wait in its engine, which is what the
autoscaler reads (``vllm:num_requests_waiting``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, PLURAL, VERSION, Operator, get_pool
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVED = "llama-3.1-8b-instruct"
FAST = {  # seconds, not minutes: every window and rate limit of the pool
    "targetWaitingRequests": 1,
    "scaleUpStabilizationSeconds": 0,
    "scaleUpPods": 4,
    "scaleUpPeriodSeconds": 1,
    "scaleDownStabilizationSeconds": 3,
    "scaleDownPods": 1,
    "scaleDownPeriodSeconds": 1,
    "coldStartSeconds": 30,
}


@pytest.fixture
def operator(
    operator_kubeconfig: Path, namespace: str, tmp_path: Path, cluster: LocalCluster
) -> Iterator[Operator]:
    url = cluster.handle.prometheus_url
    assert url is not None, "the session cluster runs without Prometheus"
    # The dev cluster's Prometheus is on loopback, as every pod of the twin.
    extra = ("--prometheus-url", url, "--allow-local-prometheus", "--autoscale-seconds", "1")
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,),
                  extra=extra)  # fmt: skip
    try:
        yield op.start()
    finally:
        op.stop()


def _pool(name: str, variants: list[dict[str, Any]], **autoscaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": SERVED, "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                      "catalogName": "llama-3.1-8b", "maxModelLen": 8192},
            "serving": {"maxNumSeqs": 2},
            "variants": variants,
            "autoscaling": FAST | autoscaling,
        },
    }  # fmt: skip


def _create(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> None:
    api = client.CustomObjectsApi(cluster.api_client)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def _replicas(cluster: LocalCluster, namespace: str, pool: str) -> dict[str, int]:
    apps = client.AppsV1Api(cluster.api_client)
    found = apps.list_namespaced_deployment(namespace, label_selector=f"gpufleet.io/pool={pool}")
    return {d.metadata.labels["gpufleet.io/variant"]: d.spec.replicas or 0 for d in found.items}


def _ready_ips(cluster: LocalCluster, namespace: str, pool: str, variant: str) -> list[str]:
    core = client.CoreV1Api(cluster.api_client)
    selector = f"gpufleet.io/pool={pool},gpufleet.io/variant={variant}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p.status.pod_ip
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


@contextlib.contextmanager
def _load(ip: str, *, streams: int) -> Iterator[None]:
    """``streams`` clients posting completions to one pod until the block ends."""
    stop = threading.Event()

    def client_loop() -> None:
        messages = [{"role": "user", "content": "hi " * 50}]
        body = json.dumps({"model": SERVED, "max_tokens": 400, "messages": messages}).encode()
        while not stop.is_set():
            request = urllib.request.Request(
                f"http://{ip}:8000/v1/chat/completions", data=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=30) as resp:
                resp.read()

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=35)


def _watch(
    cluster: LocalCluster, namespace: str, pool: str, seconds: float
) -> list[dict[str, int]]:
    """Replicas per variant sampled every 0.25 s for ``seconds``."""
    samples, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(_replicas(cluster, namespace, pool))
        time.sleep(0.25)
    return samples


def _condition(cluster: LocalCluster, namespace: str, pool: str, kind: str) -> dict[str, Any]:
    status = get_pool(cluster, namespace, pool).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def _variant_status(cluster: LocalCluster, namespace: str, pool: str) -> dict[str, Any]:
    status = get_pool(cluster, namespace, pool).get("status") or {}
    return {v["name"]: v for v in status.get("variants", [])}


@pytest.mark.timeout(120)
def test_load_grows_the_cheapest_generation_within_free_gpus_then_shrinks_worst_first(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    # A100 replicas of 8 GPUs at $1/GPU-hour are cheaper per token than H100 replicas
    # at $6; the twin has two 8-GPU A100-80GB nodes, so two such replicas fit, not four.
    _create(cluster, namespace, _pool("grow", [
        {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 2,
         "costPerGpuHour": 6.0},
        {"name": "a100", "gpu": "A100-80GB", "minReplicas": 0, "maxReplicas": 4,
         "tensorParallelSize": 8, "costPerGpuHour": 1.0},
    ]))  # fmt: skip
    (ip,) = until("the h100 replica Ready", lambda: _ready_ips(
        cluster, namespace, "grow", "h100"), timeout=60)  # fmt: skip
    until("ScalingActive=True", lambda: _condition(cluster, namespace, "grow",
          "ScalingActive").get("status") == "True", timeout=20)  # fmt: skip
    # 2 running + 3 waiting: three times the target of one H100 replica; one A100
    # replica (8 GPUs) absorbs that, and is the cheaper per token: only it grows.
    with _load(ip, streams=5):
        until("an a100 replica added", lambda: _replicas(cluster, namespace, "grow")
              .get("a100", 0) >= 1, timeout=40)  # fmt: skip
        moderate = _watch(cluster, namespace, "grow", 4)
        # 20 more clients: more than both generations can hold at their maximum.
        with _load(ip, streams=20):
            until("the a100 variant grown to the two replicas that fit",
                  lambda: _replicas(cluster, namespace, "grow").get("a100") == 2,
                  timeout=40)  # fmt: skip
            during = _watch(cluster, namespace, "grow", 6)
            seen = _variant_status(cluster, namespace, "grow")
    assert {(s["h100"], s["a100"]) for s in moderate} == {(1, 1)}, moderate
    assert max(s["a100"] for s in during) == 2, "never beyond the A100 GPUs that are free"
    assert seen["a100"]["desiredReplicas"] == 2 and seen["a100"]["lastScaleTime"]
    assert "up" in seen["a100"]["scalingReason"] or "steady" in seen["a100"]["scalingReason"]
    generations = {g["gpu"]: g for g in get_pool(cluster, namespace, "grow")["status"]
                   ["generations"]}  # fmt: skip
    assert generations["A100-80GB"]["gpusPerNode"] == 8
    assert generations["A100-80GB"]["freeGpus"] == 0, "both A100 nodes taken by the pool"

    # The drop: after the 3 s window the worst per token (h100, above its minimum)
    # goes first, then the A100s down to their minimum of 0.
    shrinking = _watch(cluster, namespace, "grow", 25)
    assert shrinking[-1] == {"h100": 1, "a100": 0}, shrinking[-5:]
    peak = {"h100": 2, "a100": 2}
    assert during[-1] == peak
    first_down = next(s for s in shrinking if s != peak)
    assert first_down == {"h100": 1, "a100": 2}, "the worst $/token shrinks first"


@pytest.mark.timeout(120)
def test_loading_replicas_stop_a_second_scale_up(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _create(cluster, namespace, _pool("cold", [
        {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 4},
    ], targetWaitingRequests=4))  # fmt: skip
    (ip,) = until("the first replica Ready", lambda: _ready_ips(
        cluster, namespace, "cold", "h100"), timeout=60)  # fmt: skip
    # 2 running + 6 waiting on one replica: 1.5 times its target, so one more replica
    # absorbs it; while that one loads it counts as capacity, and once Ready it is.
    with _load(ip, streams=8):
        until("one replica added", lambda: _replicas(cluster, namespace, "cold")["h100"] >= 2,
              timeout=40)  # fmt: skip
        samples = _watch(cluster, namespace, "cold", 10)
    assert max(s["h100"] for s in samples) == 2, samples


@pytest.mark.timeout(120)
def test_external_mode_leaves_replicas_alone(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _create(cluster, namespace, _pool("ext", [
        {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 4},
    ], mode="external"))  # fmt: skip
    (ip,) = until("the replica Ready", lambda: _ready_ips(
        cluster, namespace, "ext", "h100"), timeout=60)  # fmt: skip
    with _load(ip, streams=16):
        samples = _watch(cluster, namespace, "ext", 10)
    assert {s["h100"] for s in samples} == {1}
    assert _condition(cluster, namespace, "ext", "ScalingActive")["reason"] == "ExternalAutoscaler"
    # A HorizontalPodAutoscaler (here: kubectl scale) owns replicas from then on.
    cluster.kubectl("scale", "-n", namespace, "deployment/ext-h100", "--replicas=3")
    assert {s["h100"] for s in _watch(cluster, namespace, "ext", 4)} == {3}


@pytest.mark.timeout(60)
def test_tp_is_planned_for_the_nodes_there_are(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    # The twin's L40S nodes have 4 GPUs: a replica of 8 can never be placed.
    _create(cluster, namespace, _pool("shape", [
        {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 2},
        {"name": "l40s", "gpu": "L40S", "minReplicas": 1, "maxReplicas": 2,
         "tensorParallelSize": 8},
    ]))  # fmt: skip

    def infeasible() -> dict[str, Any] | None:
        l40s = _variant_status(cluster, namespace, "shape").get("l40s", {})
        return l40s if l40s.get("feasible") is False else None

    l40s = until("l40s reported infeasible", infeasible, timeout=30)
    assert "exceeds the 4 L40S GPUs per node" in l40s["reason"], l40s
    assert "l40s" not in _replicas(cluster, namespace, "shape"), "no Deployment left Pending"
    assert _condition(cluster, namespace, "shape", "Degraded")["reason"] == "VariantInfeasible"
    status = get_pool(cluster, namespace, "shape")["status"]
    generations = {g["gpu"]: g for g in status["generations"]}
    assert generations["L40S"]["gpusPerNode"] == 4 and generations["L40S"]["nodes"] == 2
    assert generations["H100-80GB"]["gpusPerNode"] == 8
