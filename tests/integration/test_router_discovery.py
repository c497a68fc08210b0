"""The router finds its endpoints in the real control plane and routes to them.

Deployments labelled as the operator labels its pods are scheduled by the real
scheduler onto KWOK GPU nodes and a ``gpufleet sim`` process listens at each pod's own
loopback IP. The router discovers the pool's pods (``source: pods``: the API server
refuses loopback addresses in EndpointSlices, so the dev cluster's Services get none)
and must route to those simulators; scaling a variant to zero removes its endpoint.
A router given a ConfigMap and a tenant Secret applies their changes while it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes import client

from gpufleet.hardware import catalog
from gpufleet.ports import free_port
from gpufleet.router import appkeys
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
                       "source": "pods"},
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


CONFIG_MAP = "policy-router"
KEY_SECRET = "acme-key"


def _document(namespace: str, kubeconfig: str, generation: int, **policy: Any) -> dict[str, Any]:
    """A router.yaml as the operator renders it (plus where this test's API is)."""
    tenant = {"name": "acme", "apiKeySecretRef": {"name": KEY_SECRET, "key": "token"}}
    return {
        "kubernetes": {"namespace": namespace, "kubeconfig": kubeconfig, "source": "pods",
                       "pools": [POOL], "configMap": CONFIG_MAP, "policyName": "policy"},
        "policyGeneration": generation,
        "policy": {"pools": [POOL], "strategy": "least-request",
                   "admission": {"tenants": [tenant]}, **policy},
        "apiKeys": {"acme": {"secret": {"name": KEY_SECRET, "key": "token"}}},
        "healthCheck": {"intervalSeconds": 0.5},
    }  # fmt: skip


def _put_document(core: client.CoreV1Api, namespace: str, document: object) -> None:
    body = {"metadata": {"name": CONFIG_MAP}, "data": {"router.yaml": yaml.safe_dump(document)}}
    try:
        core.replace_namespaced_config_map(CONFIG_MAP, namespace, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


async def _stats(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + "/stats") as response:
        return dict(await response.json())


async def _applied_after(base: str, check: Callable[[dict[str, Any]], bool]) -> float:
    """Seconds until /stats passes ``check`` (at most 5 s, the router's promise)."""
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        if check(await _stats(base)):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"not applied within 5 s; /stats config {(await _stats(base))['config']}")


async def _ask(base: str, key: str, model: str = MODEL) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + "/v1/chat/completions", json={**chat(), "model": model},
                     headers=headers) as response,
    ):  # fmt: skip
        return response.status


@pytest.mark.timeout(180)
async def test_configuration_and_keys_change_live_and_endpoints_follow_watches(
    cluster: LocalCluster, namespace: str
) -> None:
    core, apps = client.CoreV1Api(cluster.api_client), client.AppsV1Api(cluster.api_client)
    apps.create_namespaced_deployment(namespace, _variant("H100-80GB", 1))
    _until("the variant Running with a pod IP", lambda: len(_pod_ips(core, namespace)) == 1)
    [ip] = _pod_ips(core, namespace).values()
    url, kubeconfig = f"http://{ip}:{PORT}", str(cluster.kubeconfig)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": KEY_SECRET}, "stringData": {"token": "first-key-123"}}
    )
    first = _document(namespace, kubeconfig, 1)
    _put_document(core, namespace, first)
    with _sims_at({"H100-80GB": (ip, 1)}):
        async with serve_router(first) as (base, application):
            router = application[appkeys.ROUTER]
            await _stats_until(base, "the pod's endpoint discovered and healthy", lambda s: [
                (e["id"], e["healthy"], e["pool"]) for e in s["endpoints"]
            ] == [(url, True, POOL)])  # fmt: skip
            await _applied_after(base, lambda s: s["config"]["policyGeneration"] == 1)
            assert await _ask(base, "first-key-123") == 200

            # An alias and scorer weights change: applied without a restart.
            second = _document(namespace, kubeconfig, 2, strategy="cost",
                               modelAliases=[{"name": "fast", "model": MODEL}],
                               scorerWeights={"load": 5}, generationWeights={
                                   "overrides": {"H100-80GB": 3.0}})  # fmt: skip
            _put_document(core, namespace, second)
            took = await _applied_after(base, lambda s: s["config"]["policyGeneration"] == 2)
            print(f"\nConfigMap change applied after {took * 1000:.0f} ms")
            assert router.policy.scorer_weights.load == 5 and router.policy.strategy == "cost"
            assert await _ask(base, "first-key-123", model="fast") == 200
            stats = await _stats(base)
            assert stats["effectiveWeights"] == {"H100-80GB": 3.0}
            assert stats["backends"] == [
                {"pool": POOL, "gpu": "H100-80GB", "endpoints": 1, "readyEndpoints": 1}
            ]

            # A new tenant key in the Secret: the old one stops working, the new works.
            renewed = {"metadata": {"name": KEY_SECRET}, "stringData": {"token": "second-key-456"}}
            core.replace_namespaced_secret(KEY_SECRET, namespace, renewed)
            started = time.monotonic()
            while await _ask(base, "second-key-456") != 200:
                assert time.monotonic() - started < 5.0, "the new key was not accepted in 5 s"
                await asyncio.sleep(0.02)
            print(f"Secret change applied after {(time.monotonic() - started) * 1000:.0f} ms")
            assert await _ask(base, "first-key-123") == 401

            # A bad document: the last good configuration keeps serving, /stats says why.
            _put_document(core, namespace, {**second, "policy": {"strategy": "random"}})
            await _applied_after(base, lambda s: "policy.strategy" in s["config"]["error"])
            assert (await _stats(base))["config"]["policyGeneration"] == 2
            assert await _ask(base, "second-key-456", model="fast") == 200
            _put_document(core, namespace, second)
            await _applied_after(base, lambda s: s["config"]["error"] == "")

            # The endpoint leaves with its pod (seen through the watch).
            apps.patch_namespaced_deployment_scale(
                f"{POOL}-h100-80gb", namespace, {"spec": {"replicas": 0}}
            )
            took = await _applied_after(base, lambda s: s["endpoints"] == [])
            print(f"scaled-down pod's endpoint gone after {took * 1000:.0f} ms")


ROUTERS_AT_ONCE = 6


@pytest.mark.timeout(120)
def test_routers_started_at_once_all_load_their_configuration_and_keys(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """As the operator's two replicas (or more) start together: each process watches the
    ConfigMap and the tenant Secret and loads both. (One of six often never did: its
    watches had ended at start, unseen — /readyz said config_loaded false, no error.)"""
    core = client.CoreV1Api(cluster.api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": KEY_SECRET}, "stringData": {"token": "key-at-start"}}
    )
    document = _document(namespace, str(cluster.kubeconfig), 1)
    _put_document(core, namespace, document)
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump(document))
    ports = [free_port() for _ in range(ROUTERS_AT_ONCE)]
    logs = [tmp_path / f"router-{i}.log" for i in range(ROUTERS_AT_ONCE)]
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen([sys.executable, "-m", "gpufleet.cli", "router", "--config",
                              str(config), "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=files.enter_context(log.open("wb")))
            for port, log in zip(ports, logs, strict=True)
        ]  # fmt: skip
        try:
            states = _until_loaded(ports, timeout_s=30)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=20)
    unloaded = {p: (s, logs[ports.index(p)].read_text()[-2000:])
                for p, s in states.items() if not s.get("config_loaded")}  # fmt: skip
    assert unloaded == {}


def _until_loaded(ports: list[int], *, timeout_s: float) -> dict[int, dict[str, Any]]:
    """Each router's /readyz document, once all say config_loaded or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = {port: _readyz(port) for port in ports}
        if all(s.get("config_loaded") for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
    except OSError:
        return {}
