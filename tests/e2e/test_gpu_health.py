"""GPU health on the twin: each model-server pod the operator renders has a gpu-agent
sidecar that reads its simulator's GPUs, serves their DCGM metrics at 9400 (scraped by
Prometheus) and a verdict at /health; a GPU overheated through the simulator's fault
endpoint makes the router drain that endpoint — it gets no request — and the endpoint
comes back once the GPU cools."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from gpufleet import labels
from gpufleet.devcluster import workloads
from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, VERSION, Operator
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = "gh-pool"
POLICY = "gh"
SERVED = "llama-3.1-8b-instruct"
GENERATIONS = {"h100": "H100-80GB", "a100": "A100-80GB"}


def _manifests() -> str:
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": POOL},
        "spec": {
            "model": {
                "name": SERVED,
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "catalogName": "llama-3.1-8b",
                "maxModelLen": 8192,
            },
            "variants": [
                {"name": v, "gpu": g, "minReplicas": 1, "maxReplicas": 1}
                for v, g in GENERATIONS.items()
            ],
        },
    }
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy", "metadata": {"name": POLICY},
        "spec": {"pools": [POOL], "strategy": "least-request",
                 "router": {"replicas": 1, "resources": {"requests": {"cpu": "100m"}}}},
    }  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [pool, policy]})


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _send(url: str, body: dict[str, Any], method: str = "POST") -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()
        return int(resp.status)


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _pool_pods(cluster: LocalCluster, namespace: str) -> dict[str, client.V1Pod]:
    """GPU generation -> its Ready pod, once every generation has one."""
    core = client.CoreV1Api(cluster.api_client)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.POOL}={POOL}").items
    ready = {p.metadata.labels[labels.GPU]: p for p in pods
             if _ready(p) and p.metadata.deletion_timestamp is None}  # fmt: skip
    return ready if set(ready) == set(GENERATIONS.values()) else {}


def _router_ip(cluster: LocalCluster, namespace: str) -> str | None:
    selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(POLICY).items())
    pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(
        namespace, label_selector=selector
    )
    return next((p.status.pod_ip for p in pods.items if _ready(p)), None)


def _endpoint(router: str, ip: str) -> dict[str, Any]:
    _, body = _get(f"http://{router}:8080/stats")
    rows = json.loads(body or "{}").get("endpoints") or []
    return next((r for r in rows if r.get("id") == f"http://{ip}:8000"), {})


def _requests_by_endpoint(router: str) -> dict[str, int]:
    _, body = _get(f"http://{router}:8080/stats")
    rows = json.loads(body)["endpoints"]
    return {r["id"]: int(r.get("requests", 0)) for r in rows}


def _chat(router: str) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert _send(f"http://{router}:8080/v1/chat/completions", body) == 200


def _prometheus(cluster: LocalCluster, query: str) -> list[dict[str, Any]]:
    url = cluster.handle.prometheus_url
    assert url is not None, "the session cluster runs without Prometheus"
    status, body = _get(f"{url}/api/v1/query?query={urllib.parse.quote(query)}")
    return list(json.loads(body)["data"]["result"]) if status == 200 else []


@pytest.mark.timeout(240)
def test_an_overheating_gpu_is_drained_and_comes_back_when_it_cools(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_manifests())
    pods = until("a Ready pod per generation", lambda: _pool_pods(cluster, namespace), timeout=90)
    router = until("the router pod Ready", lambda: _router_ip(cluster, namespace), timeout=60)
    victim, other = pods["H100-80GB"].status.pod_ip, pods["A100-80GB"].status.pod_ip
    for ip in (victim, other):
        status, body = _get(f"http://{ip}:9400/health")
        assert status == 200 and json.loads(body)["healthy"] is True, body
        status, body = _get(f"http://{ip}:9400/metrics")
        assert "gpufleet_gpu_healthy 1.0" in body  # the agent serves 9400, not the simulator
        assert "DCGM_FI_DEV_GPU_TEMP{" in body
    until("both endpoints routable", lambda: _endpoint(router, victim).get("healthy")
          and _endpoint(router, other).get("healthy"), timeout=30)  # fmt: skip

    gpus = f"http://{victim}:{workloads.SIM_GPU_PORT}/admin/faults"
    assert _send(gpus, {"gpu_temperature_c": 95}) == 200
    heated = time.monotonic()
    status, body = until(
        "the agent's verdict unhealthy",
        lambda: r if (r := _get(f"http://{victim}:9400/health"))[0] == 503 else None,
        timeout=15,
    )
    assert "at 95 °C (limit 85)" in json.loads(body)["reasons"][0]
    until("the router drains the hot endpoint",
          lambda: _endpoint(router, victim).get("healthy") is False, timeout=20)  # fmt: skip
    drained = time.monotonic() - heated
    assert _endpoint(router, other)["healthy"] is True
    hot = f'DCGM_FI_DEV_GPU_TEMP{{namespace="{namespace}",pod="{pods["H100-80GB"].metadata.name}"}}'
    until(
        "Prometheus scrapes 95 °C from the agent",
        lambda: any(r["value"][1] == "95" for r in _prometheus(cluster, hot)),
        timeout=30,
    )
    before = _requests_by_endpoint(router)
    for _ in range(8):
        _chat(router)
    after = _requests_by_endpoint(router)
    assert after[f"http://{victim}:8000"] == before[f"http://{victim}:8000"], "sent to a hot GPU"
    assert after[f"http://{other}:8000"] == before[f"http://{other}:8000"] + 8

    assert _send(gpus, {"gpu_temperature_c": None}) == 200
    cooled = time.monotonic()
    until("the agent's verdict healthy again",
          lambda: _get(f"http://{victim}:9400/health")[0] == 200, timeout=15)  # fmt: skip
    until("the router routes to it again",
          lambda: _endpoint(router, victim).get("healthy") is True, timeout=20)  # fmt: skip
    print(f"drained {drained:.1f} s after the fault, back {time.monotonic() - cooled:.1f} s "
          "after the GPU cooled")  # fmt: skip
    for _ in range(8):
        _chat(router)
    back = _requests_by_endpoint(router)
    assert back[f"http://{victim}:8000"] > after[f"http://{victim}:8000"], "never came back"
