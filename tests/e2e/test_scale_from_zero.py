"""Scale from zero on the twin: a ModelPool whose variants all have ``minReplicas: 0``
behind an operator-rendered router. A chat request to the router while no pod exists is
held (the router reads the pool's served model from ``kubernetes.poolModels``), counted
as demand in its ``/stats``, which the operator's autoscaler reads; the autoscaler starts
the cheapest variant per token, the held request is answered 200 once the pod is Ready,
and the pool goes back to zero after ``scaleToZeroAfterSeconds`` idle.

Time is compressed as in the autoscaler's integration tests: the operator decides every
second and the simulators load in about 2 s of wall time.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpufleet import labels
from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, VERSION, Operator
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = "zero-pool"
POLICY = "zero"
SERVED = "llama-3.1-8b-instruct"
IDLE_SECONDS = 4
RATE_WINDOW_S = 60  # gpufleet.promquery.series.RATE_WINDOW


@pytest.fixture
def operator(
    operator_kubeconfig: Path, namespace: str, tmp_path: Path, cluster: LocalCluster
) -> Iterator[Operator]:
    url = cluster.handle.prometheus_url
    assert url is not None, "the session cluster runs without Prometheus"
    extra = ("--router-discovery", "pods", "--prometheus-url", url, "--allow-local-prometheus",
             "--autoscale-seconds", "1")  # fmt: skip
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,),
                  extra=extra)  # fmt: skip
    try:
        yield op.start()
    finally:
        op.stop()


def _manifests() -> str:
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": POOL},
        "spec": {
            "model": {"name": SERVED, "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                      "catalogName": "llama-3.1-8b", "maxModelLen": 8192},
            "variants": [
                {"name": "h100", "gpu": "H100-80GB", "minReplicas": 0, "maxReplicas": 1,
                 "costPerGpuHour": 6.0},
                {"name": "a100", "gpu": "A100-80GB", "minReplicas": 0, "maxReplicas": 1,
                 "costPerGpuHour": 1.0},
            ],
            "autoscaling": {
                "scaleUpStabilizationSeconds": 0, "scaleUpPeriodSeconds": 1,
                "scaleDownStabilizationSeconds": 1, "scaleDownPeriodSeconds": 1,
                "coldStartSeconds": 30, "scaleToZeroAfterSeconds": IDLE_SECONDS,
            },
        },
    }  # fmt: skip
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy", "metadata": {"name": POLICY},
        "spec": {"pools": [POOL], "strategy": "least-request",
                 "router": {"replicas": 1, "resources": {"requests": {"cpu": "100m"}}}},
    }  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [pool, policy]})


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _router_ip(cluster: LocalCluster, namespace: str) -> str | None:
    selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(POLICY).items())
    pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(
        namespace, label_selector=selector
    )
    return next((p.status.pod_ip for p in pods.items if _ready(p)), None)


def _replicas(cluster: LocalCluster, namespace: str) -> dict[str, int]:
    apps = client.AppsV1Api(cluster.api_client)
    found = apps.list_namespaced_deployment(namespace, label_selector=f"{labels.POOL}={POOL}")
    return {d.metadata.labels[labels.VARIANT]: d.spec.replicas or 0 for d in found.items}


def _pool_pods(cluster: LocalCluster, namespace: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(cluster.api_client)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.POOL}={POOL}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def _stats(router: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{router}:8080/stats", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def _chat(router: str, outcome: dict[str, Any]) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    request = urllib.request.Request(
        f"http://{router}:8080/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=90) as resp:
            outcome["status"], outcome["body"] = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        outcome["status"], outcome["body"] = exc.code, exc.read().decode()
    except OSError as exc:  # the router gone (the namespace deleted after a failure)
        outcome["status"], outcome["body"] = 0, str(exc)
    outcome["seconds"] = time.monotonic() - started


@pytest.mark.timeout(270)
def test_a_request_to_a_pool_at_zero_is_held_until_the_autoscaler_starts_it(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_manifests())
    router = until("the router pod Ready with no pool pod", lambda: _router_ip(cluster, namespace),
                   timeout=60)  # fmt: skip
    until("both Deployments at 0", lambda: _replicas(cluster, namespace) == {"h100": 0, "a100": 0},
          timeout=30)  # fmt: skip
    assert _pool_pods(cluster, namespace) == []

    outcome: dict[str, Any] = {}
    caller = threading.Thread(target=_chat, args=(router, outcome), daemon=True)
    caller.start()
    demand = until(
        "the router holding the request as demand",
        lambda: d if (d := _stats(router).get("demand", {}).get(POOL, {})).get("held") else None,
        timeout=15,
    )
    assert demand["held"] == 1, demand
    # The cheaper per token of the two: an A100 at $1/GPU-hour, not an H100 at $6.
    until("the autoscaler starting one variant",
          lambda: sum(_replicas(cluster, namespace).values()) == 1, timeout=30)  # fmt: skip
    started = _replicas(cluster, namespace)
    assert started == {"h100": 0, "a100": 1}, started
    caller.join(timeout=90)
    assert not caller.is_alive(), "the held request was never answered"
    assert outcome["status"] == 200, outcome
    assert outcome["body"]["choices"][0]["message"]["content"], outcome
    (pod,) = _pool_pods(cluster, namespace)
    assert pod.metadata.labels[labels.GPU] == "A100-80GB"

    # Idle includes no tokens generated within vLLM's counter's rate window (a minute of
    # Prometheus time, not compressed): when Prometheus scraped the pod before the
    # request's tokens, the idle time starts up to that long after the answer.
    until("the pool back at zero once idle",
          lambda: _replicas(cluster, namespace) == {"h100": 0, "a100": 0},
          timeout=RATE_WINDOW_S + IDLE_SECONDS + 30)  # fmt: skip
    assert _stats(router).get("demand", {}).get(POOL, {}).get("held", 0) == 0
