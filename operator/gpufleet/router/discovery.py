"""Where endpoints come from, and the loops that keep their state current.

- ``static_endpoints``: the config's ``backends`` list;
- ``kubernetes_loop``: the EndpointSlices (or, with ``source: pods``, the pods) of the
  policy's pools (the ModelPool's
  Service is named after the pool, see ``gpufleet.controller.render``). Only endpoints
  that are ready and not terminating are routable; a terminating one leaves the set
  (its requests in flight finish — the registry drains it). GPU generation, TP and the
  served model come from the pod's labels ``gpufleet.io/gpu``,
  ``gpufleet.io/tensor-parallel-size`` and annotation ``gpufleet.io/model`` (as the
  operator renders them);
- ``health_loop``: ``GET /health`` on every endpoint;
- ``learning_loop``: in ``auto`` generation-weight mode, applies learned throughput.

The Kubernetes client is synchronous; its calls run in a worker thread, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from gpufleet import labels as contract
from gpufleet.hardware import catalog
from gpufleet.planning import models, planner
from gpufleet.router import appkeys
from gpufleet.router.config import Backend, RouterConfig
from gpufleet.routing.model import Endpoint

log = logging.getLogger("gpufleet.router.discovery")


def generation_weight(config: RouterConfig, gpu: str) -> float:
    overrides = config.policy.generation_weights.overrides
    return overrides.get(gpu) or catalog.get(gpu).throughput_weight


def kv_capacity(model: str, gpu: str, tp: int) -> int:
    """KV-cache tokens of one replica, planned from the catalogs; 0 when unknown."""
    try:
        plan = planner.plan_variant(models.get(model), catalog.get(gpu), tensor_parallel_size=tp)
    except (models.UnknownModel, catalog.UnknownGpu, ValueError):
        return 0
    return plan.kv_cache_tokens if plan.feasible else 0


def endpoint(
    config: RouterConfig, *, url: str, model: str, gpu: str, tp: int, kv_tokens: int | None = None
) -> Endpoint:
    return Endpoint(
        id=url,
        model=model,
        gpu=gpu,
        tensor_parallel_size=tp,
        throughput=generation_weight(config, gpu) * tp,
        kv_capacity_tokens=kv_tokens if kv_tokens is not None else kv_capacity(model, gpu, tp),
        max_in_flight=config.limits.max_in_flight_per_endpoint,
    )


def static_endpoints(config: RouterConfig) -> list[Endpoint]:
    return [_from_backend(config, b) for b in config.backends]


def _from_backend(config: RouterConfig, backend: Backend) -> Endpoint:
    return endpoint(
        config, url=backend.url, model=backend.model, gpu=backend.gpu,
        tp=backend.tensor_parallel_size, kv_tokens=backend.kv_cache_tokens,
    )  # fmt: skip


async def health_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    check = router.config.health_check
    limit = aiohttp.ClientTimeout(total=check.timeout_seconds)
    while True:
        slots = list(router.registry.slots.values())
        results = await asyncio.gather(
            *(_probe(appkeys.http(app), s.endpoint.id + check.path, limit) for s in slots)
        )
        for slot, ok in zip(slots, results, strict=True):
            if slot.healthy != ok:
                log.info(
                    "endpoint %s is now %s", slot.endpoint.id, "healthy" if ok else "unhealthy"
                )
            slot.healthy = ok
        await asyncio.sleep(check.interval_seconds)


async def _probe(http: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout) -> bool:
    try:
        async with http.get(url, timeout=limit) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def learning_loop(app: web.Application) -> None:
    """Re-weight endpoints from learned throughput every few seconds."""
    router = app[appkeys.ROUTER]
    while True:
        await asyncio.sleep(5.0)
        slots = router.registry.slots.values()
        catalog_weights = {
            s.endpoint.id: generation_weight(router.config, s.endpoint.gpu)
            * s.endpoint.tensor_parallel_size
            for s in slots
        }
        learned = router.learner.weights(catalog_weights)
        router.registry.replace(
            dataclasses.replace(s.endpoint, throughput=learned[s.endpoint.id]) for s in slots
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PodInfo:
    gpu: str
    tp: int
    model: str


def endpoints_from_slices(
    config: RouterConfig, slices: Iterable[Mapping[str, Any]], pods: Mapping[str, PodInfo]
) -> list[Endpoint]:
    """Routable endpoints of raw EndpointSlice objects (``to_dict()`` form, snake_case);
    endpoints whose pod is unknown or lacks the GPU label are skipped."""
    port_name = config.kubernetes.port_name if config.kubernetes else "http"
    found: dict[str, Endpoint] = {}
    for item in slices:
        port = _port(item.get("ports") or [], port_name)
        for ep in item.get("endpoints") or []:
            conditions = ep.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            pod = pods.get(((ep.get("target_ref") or {}).get("name")) or "")
            if port is None or pod is None:
                continue
            for address in ep.get("addresses") or []:
                url = f"http://{address}:{port}"
                found[url] = endpoint(config, url=url, model=pod.model, gpu=pod.gpu, tp=pod.tp)
    return list(found.values())


def _port(ports: list[Mapping[str, Any]], name: str) -> int | None:
    for port in ports:
        if port.get("name") == name and port.get("port"):
            return int(port["port"])
    return int(ports[0]["port"]) if ports and ports[0].get("port") else None


def endpoints_from_pods(config: RouterConfig, pods: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    """Routable endpoints of raw pods (``to_dict()`` form): Running, Ready, not terminating,
    with an IP, the GPU label and a container port named ``portName`` (else the first)."""
    port_name = config.kubernetes.port_name if config.kubernetes else "http"
    found: list[Endpoint] = []
    for pod in pods:
        info, address = pod_info(pod), _routable_ip(pod)
        ports = [p for c in (pod.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or []]  # fmt: skip
        port = _container_port(ports, port_name)
        if info is None or address is None or port is None:
            continue
        url = f"http://{address}:{port}"
        found.append(endpoint(config, url=url, model=info.model, gpu=info.gpu, tp=info.tp))
    return found


def _routable_ip(pod: Mapping[str, Any]) -> str | None:
    if (pod.get("metadata") or {}).get("deletion_timestamp"):
        return None
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])  # fmt: skip
    return status.get("pod_ip") if ready and status.get("phase") == "Running" else None


def _container_port(ports: list[Mapping[str, Any]], name: str) -> int | None:
    for port in ports:
        if port.get("name") == name:
            return int(port["container_port"])
    return int(ports[0]["container_port"]) if ports else None


def pod_info(pod: Mapping[str, Any]) -> PodInfo | None:
    """GPU, TP and model of a raw pod (``to_dict()`` form); None without a GPU label."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    gpu = str(labels.get(contract.GPU, ""))
    if gpu not in catalog.GPUS:
        return None
    try:
        tp = int(labels.get(contract.TENSOR_PARALLEL_SIZE, "1"))
    except ValueError:
        tp = 1
    model = annotations.get(contract.MODEL_ANNOTATION) or labels.get(contract.MODEL, "")
    return PodInfo(gpu=gpu, tp=max(1, tp), model=model)


async def kubernetes_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    source = router.config.kubernetes
    assert source is not None
    api = await asyncio.to_thread(_api_client, source.kubeconfig)
    try:
        while True:
            try:
                found = await asyncio.to_thread(_discover, api, router.config)
            except Exception as exc:  # the API server may be briefly unreachable
                log.warning("endpoint discovery failed: %s", type(exc).__name__)
            else:
                _apply(router, found)
            await asyncio.sleep(source.interval_seconds)
    finally:
        await asyncio.to_thread(api.close)


def _apply(router: Any, found: list[Endpoint]) -> None:
    before = set(router.registry.slots)
    router.registry.replace(found)
    after = set(router.registry.slots)
    if before != after:
        log.info(
            "endpoints: +%d -%d, %d routable", len(after - before), len(before - after), len(after)
        )


def _api_client(kubeconfig: Any) -> Any:
    from gpufleet import kube

    return kube.new_client(kubeconfig)


def _discover(api: Any, config: RouterConfig) -> list[Endpoint]:
    from kubernetes import client

    source = config.kubernetes
    assert source is not None
    pools = _pools(api, config)
    if not pools:
        return []
    pods = client.CoreV1Api(api).list_namespaced_pod(
        source.namespace, label_selector=f"{contract.POOL} in ({','.join(pools)})"
    )
    if source.source == "pods":
        return endpoints_from_pods(config, [p.to_dict() for p in pods.items])
    selector = f"{contract.SERVICE_NAME} in ({','.join(pools)})"
    discovery_api = client.DiscoveryV1Api(api)
    slices = discovery_api.list_namespaced_endpoint_slice(source.namespace, label_selector=selector)
    infos: dict[str, PodInfo] = {}
    for pod in pods.items:
        raw = pod.to_dict()
        info = pod_info(raw)
        if info is not None:
            infos[str(raw["metadata"]["name"])] = info
    return endpoints_from_slices(config, [s.to_dict() for s in slices.items], infos)


def _pools(api: Any, config: RouterConfig) -> list[str]:
    """Pool names: the policy's list, or the ModelPools its selector matches."""
    from kubernetes import client

    policy = config.policy
    if policy.pools:
        return list(policy.pools)
    selector = policy.pool_selector
    assert selector is not None and config.kubernetes is not None
    terms = [f"{k}={v}" for k, v in selector.match_labels.items()]
    found: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "gpufleet.io", "v1alpha1", config.kubernetes.namespace, "modelpools",
        label_selector=",".join(terms),
    )  # fmt: skip
    return [item["metadata"]["name"] for item in found.get("items", [])]
