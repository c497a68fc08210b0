"""The router finds its endpoints in the real control plane and routes to them.

Deployments labelled as the operator labels its pods are scheduled by the real
scheduler onto KWOK GPU nodes and a ``gpufleet sim`` process listens at each pod's own
loopback IP. The router discovers the pool's pods (``source: pods``: the API server
refuses loopback addresses in EndpointSlices, so the dev cluster's Services get none)
and must route to those simulators; scaling a variant to zero removes its endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from gpufleet.hardware import catalog
from tests.conftest import LocalCluster
from tests.router.peers import MODEL, chat, get_status, serve_router
from tests.waiting import until as _until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = "pool-a"
PORT = 8000


def _variant(gpu: str, tp: int) -> dict[str, Any]:
    labels = {
        "gpufleet.io/pool": POOL,
        "gpufleet.io/variant": gpu.lower(),
        "gpufleet.io/gpu": gpu,
        "gpufleet.io/tensor-parallel-size": str(tp),
    }
    product = {
        "key": catalog.PRODUCT_LABEL,
        "operator": "In",
        "values": list(catalog.get(gpu).products),
    }
    affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [product]}]}}  # fmt: skip
    container = {
        "name": "vllm",
        "image": "registry.invalid/vllm:test",
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": {"limits": {"nvidia.com/gpu": str(tp)}},
    }
    return {
        "metadata": {"name": f"{POOL}-{gpu.lower()}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"gpufleet.io/variant": gpu.lower()}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"gpufleet.io/model": MODEL}},
                "spec": {
                    "containers": [container],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "affinity": {"nodeAffinity": affinity},
                },
            },
        },
    }


def _service() -> dict[str, Any]:
    return {
        "metadata": {"name": POOL},
        "spec": {
            "selector": {"gpufleet.io/pool": POOL},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }


def _pod_ips(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """gpu -> pod IP of the pool's Running pods."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"gpufleet.io/pool={POOL}").items
    return {
        p.metadata.labels["gpufleet.io/gpu"]: p.status.pod_ip
        for p in pods
        if p.status.pod_ip and p.metadata.deletion_timestamp is None
    }


@contextlib.contextmanager
def _sims_at(addresses: dict[str, tuple[str, int]]) -> Iterator[None]:
    """One ``gpufleet sim`` per (gpu -> (ip, tp)), listening at the pod's IP."""
    procs = []
    try:
        for gpu, (ip, tp) in addresses.items():
            argv = [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", gpu, "--model", MODEL,
                    "--tp", str(tp), "--max-model-len", "8192", "--host", ip, "--port", str(PORT),
                    "--speed", "20", "--load-seconds", "0"]  # fmt: skip
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        for ip, _ in addresses.values():
            _until(f"simulator at {ip}", lambda ip=ip: _healthy(f"http://{ip}:{PORT}/health"))
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        return get_status(url) == 200
    except OSError:
        return False


async def _stats_until(base: str, what: str, check: Callable[[dict[str, Any]], bool]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(240):
            async with session.get(base + "/stats") as response:
                stats = await response.json()
            if check(stats):
                return
            await asyncio.sleep(0.25)
    raise AssertionError(
        f"router never reached: {what}; last /stats endpoints {stats['endpoints']}"
    )


@pytest.mark.timeout(180)
async def test_router_routes_to_pods_found_through_endpointslices(
    cluster: LocalCluster, namespace: str
) -> None:
    core, apps = client.CoreV1Api(cluster.api_client), client.AppsV1Api(cluster.api_client)
    core.create_namespaced_service(namespace, _service())
    variants = {"H100-80GB": 2, "A100-40GB": 1}
    for gpu, tp in variants.items():
        apps.create_namespaced_deployment(namespace, _variant(gpu, tp))
    ips = _until("both variants Running with pod IPs", lambda: len(_pod_ips(core, namespace)) == 2)
    assert ips
    pod_ips = _pod_ips(core, namespace)
    urls = {gpu: f"http://{ip}:{PORT}" for gpu, ip in pod_ips.items()}
    raw = {
        "kubernetes": {"namespace": namespace, "kubeconfig": str(cluster.kubeconfig),
                       "intervalSeconds": 0.5, "source": "pods"},
        "policy": {"pools": [POOL], "strategy": "least-request"},
        "healthCheck": {"intervalSeconds": 0.5},
    }  # fmt: skip
    with _sims_at({gpu: (ip, variants[gpu]) for gpu, ip in pod_ips.items()}):
        async with serve_router(raw) as (base, _app):

            def both_healthy(stats: dict[str, Any]) -> bool:
                found = {e["id"]: e for e in stats["endpoints"]}
                return set(found) == set(urls.values()) and all(
                    e["healthy"] for e in found.values()
                )

            await _stats_until(base, "both pod endpoints discovered and healthy", both_healthy)
            async with aiohttp.ClientSession() as session:
                for _ in range(4):
                    async with session.post(base + "/v1/chat/completions", json=chat()) as resp:
                        assert resp.status == 200, await resp.text()
                async with session.get(base + "/stats") as response:
                    stats = await response.json()
            by_id = {e["id"]: e for e in stats["endpoints"]}
            for gpu, url in urls.items():
                assert by_id[url]["gpu"] == gpu
                assert by_id[url]["tensor_parallel_size"] == variants[gpu]
            assert sum(e["requests"] for e in by_id.values()) == 4
            assert all(e["requests"] > 0 for e in by_id.values()), "least-request used both"

            apps.patch_namespaced_deployment_scale(
                f"{POOL}-h100-80gb", namespace, {"spec": {"replicas": 0}}
            )
            await _stats_until(
                base,
                "the scaled-down variant's endpoint removed",
                lambda s: [e["id"] for e in s["endpoints"]] == [urls["A100-40GB"]],
            )
            async with (
                aiohttp.ClientSession() as session,
                session.post(base + "/v1/chat/completions", json=chat()) as resp,
            ):
                assert resp.status == 200
