"""Where endpoints come from: pure functions from configuration and raw objects.

- ``static_endpoints``: the config's ``backends`` list;
- ``endpoints_from_slices`` / ``endpoints_from_pods``: the EndpointSlices (or, with
  ``source: pods``, the pods) of the routed pools, as ``gpufleet.router.cluster``'s
  watches cache them (the ModelPool's Service is named after the pool). Only endpoints
  that are ready and not terminating, of pods that their pool's own Deployment made
  (``labels.owned_by_pool``), are routable; a terminating one leaves the set (its
  requests in flight finish — the registry drains it). Pool, GPU generation, TP, served
  model, price, KV-cache capacity (the operator's plan, published on the pod; planned
  here only for pods without it) and capacity type come from the pod's labels and
  annotations
  (``gpufleet.labels``); the pod is marked for interruption (``Endpoint.interruption``,
  the picker sends it nothing new while another endpoint can serve) by the
  ``labels.INTERRUPTION_ANNOTATION`` annotation or Kubernetes' ``DisruptionTarget``
  condition; and
  the URL of its GPU health agent's verdict from the container port named
  ``labels.GPU_AGENT_PORT_NAME`` (``Endpoint.gpu_health_url``; the health loop drains
  the endpoint while it answers 503);
- ``weigh``: each endpoint's throughput — generation weight (catalog or override) x TP,
  or in ``auto`` mode the learner's figure, applied whenever endpoints are replaced so
  learning survives discovery updates;
- ``pools`` and ``watch_specs``: which pools are routed and what to watch for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from gpufleet import labels as contract
from gpufleet.api.common import LabelSelector
from gpufleet.hardware import catalog
from gpufleet.planning import models, planner
from gpufleet.router.config import Backend, RouterConfig
from gpufleet.router.kubewatch import Spec
from gpufleet.routing import throughput
from gpufleet.routing.model import Endpoint

STATIC_POOL = "static"


def generation_weight(config: RouterConfig, gpu: str) -> float:
    overrides = config.policy.generation_weights.overrides
    return overrides.get(gpu) or catalog.get(gpu).throughput_weight


def kv_capacity(model: str, gpu: str, tp: int) -> int:
    """KV-cache tokens of one replica, planned from the catalogs with default settings;
    0 when unknown. Only a fallback: a static backend that gives no ``kvCacheTokens``,
    or a pod without the operator's ``labels.KV_CACHE_TOKENS_ANNOTATION`` (not yet
    annotated, or run by an older operator) — the operator's plan is the one truth."""
    try:
        plan = planner.plan_variant(models.get(model), catalog.get(gpu), tensor_parallel_size=tp)
    except (models.UnknownModel, catalog.UnknownGpu, ValueError):
        return 0
    return plan.kv_cache_tokens if plan.feasible else 0


def endpoint(
    config: RouterConfig,
    *,
    url: str,
    model: str,
    gpu: str,
    tp: int,
    kv_tokens: int | None = None,
    pool: str = STATIC_POOL,
    cost_per_gpu_hour: float | None = None,
    gpu_health_url: str = "",
    capacity_type: str = "on-demand",
    interruption: str = "",
) -> Endpoint:
    return Endpoint(
        id=url,
        model=model,
        gpu=gpu,
        tensor_parallel_size=tp,
        throughput=generation_weight(config, gpu) * tp,
        kv_capacity_tokens=kv_tokens if kv_tokens is not None else kv_capacity(model, gpu, tp),
        max_in_flight=config.limits.max_in_flight_per_endpoint,
        pool=pool,
        cost_per_gpu_hour=cost_per_gpu_hour,
        gpu_health_url=gpu_health_url,
        capacity_type=capacity_type,
        interruption=interruption,
    )


def weigh(
    config: RouterConfig, learner: throughput.Learner, endpoints: Iterable[Endpoint]
) -> list[Endpoint]:
    """``endpoints`` with the throughput the config and learning give them now."""
    found = list(endpoints)
    base = {e.id: generation_weight(config, e.gpu) * e.tensor_parallel_size for e in found}
    if config.policy.generation_weights.mode == "auto":
        base = learner.weights(base)
    return [dataclasses.replace(e, throughput=base[e.id]) for e in found]


def static_endpoints(config: RouterConfig) -> list[Endpoint]:
    return [_from_backend(config, b) for b in config.backends]


def _from_backend(config: RouterConfig, backend: Backend) -> Endpoint:
    # Static backends belong to the one pool a standalone policy gets (``static``).
    return endpoint(
        config, url=backend.url, model=backend.model, gpu=backend.gpu,
        tp=backend.tensor_parallel_size, kv_tokens=backend.kv_cache_tokens,
        cost_per_gpu_hour=backend.cost_per_gpu_hour, capacity_type=backend.capacity_type,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class PodInfo:
    gpu: str
    tp: int
    model: str
    pool: str = ""
    cost_per_gpu_hour: float | None = None
    kv_cache_tokens: int | None = None  # as the operator planned it; None: plan here
    gpu_agent_port: int | None = None
    capacity_type: str = "on-demand"
    interruption: str = ""


GPU_HEALTH_PATH = "/health"


def gpu_health_url(address: str, pod: PodInfo) -> str:
    """The pod's GPU health agent verdict at ``address``; empty without an agent."""
    if pod.gpu_agent_port is None:
        return ""
    return f"http://{address}:{pod.gpu_agent_port}{GPU_HEALTH_PATH}"


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
                found[url] = _from_pod(config, url, pod, address=address)
    return list(found.values())


def _from_pod(config: RouterConfig, url: str, pod: PodInfo, *, address: str) -> Endpoint:
    return endpoint(
        config, url=url, model=pod.model, gpu=pod.gpu, tp=pod.tp, pool=pod.pool,
        kv_tokens=pod.kv_cache_tokens, cost_per_gpu_hour=pod.cost_per_gpu_hour,
        gpu_health_url=gpu_health_url(address, pod),
        capacity_type=pod.capacity_type, interruption=pod.interruption,
    )  # fmt: skip


def pod_infos(pods: Iterable[Mapping[str, Any]]) -> dict[str, PodInfo]:
    """Pod name -> what routing needs of it, for the routable pods among ``pods``."""
    infos = {}
    for pod in pods:
        info = pod_info(pod)
        if info is not None:
            infos[str(pod["metadata"]["name"])] = info
    return infos


def _port(ports: list[Mapping[str, Any]], name: str) -> int | None:
    for port in ports:
        if port.get("name") == name and port.get("port"):
            return int(port["port"])
    return int(ports[0]["port"]) if ports and ports[0].get("port") else None


def endpoints_from_pods(config: RouterConfig, pods: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    """Routable endpoints of raw pods (``to_dict()`` form): their pool's own, Running,
    Ready, not terminating, with an IP, the GPU label and a container port named
    ``portName`` (else the first)."""
    port_name = config.kubernetes.port_name if config.kubernetes else "http"
    found: list[Endpoint] = []
    for pod in pods:
        info, address = pod_info(pod), _routable_ip(pod)
        ports = [p for c in (pod.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or []]  # fmt: skip
        port = _container_port(ports, port_name)
        if info is None or address is None or port is None:
            continue
        found.append(_from_pod(config, f"http://{address}:{port}", info, address=address))
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
    """Pool, GPU, TP, model, price, planned KV cache, capacity type and interruption of a raw pod
    (``to_dict()`` form); None without a known GPU label or when not made by its pool's
    Deployment."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    gpu = str(labels.get(contract.GPU, ""))
    if gpu not in catalog.GPUS or not contract.owned_by_pool(meta):
        return None
    try:
        tp = int(labels.get(contract.TENSOR_PARALLEL_SIZE, "1"))
    except ValueError:
        tp = 1
    model = annotations.get(contract.MODEL_ANNOTATION) or labels.get(contract.MODEL, "")
    ports = [p for c in (pod.get("spec") or {}).get("containers") or []
             for p in c.get("ports") or []]  # fmt: skip
    agent = [p for p in ports if p.get("name") == contract.GPU_AGENT_PORT_NAME]
    return PodInfo(
        gpu=gpu, tp=max(1, tp), model=model, pool=str(labels[contract.POOL]),
        cost_per_gpu_hour=contract.parse_cost(annotations.get(contract.COST_ANNOTATION)),
        kv_cache_tokens=contract.parse_tokens(
            annotations.get(contract.KV_CACHE_TOKENS_ANNOTATION)
        ),
        gpu_agent_port=int(agent[0]["container_port"]) if agent else None,
        capacity_type="spot" if labels.get(contract.CAPACITY_TYPE) == "spot" else "on-demand",
        interruption=interruption(pod),
    )  # fmt: skip


def interruption(pod: Mapping[str, Any]) -> str:
    """Why the pod's node is about to go away: the interruption annotation's value, else
    the reason of a true ``DisruptionTarget`` condition; empty when neither is set."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    marked = annotations.get(contract.INTERRUPTION_ANNOTATION)
    if marked is not None:
        return str(marked) or "marked"
    for condition in (pod.get("status") or {}).get("conditions") or []:
        disrupted = condition.get("type") == contract.DISRUPTION_TARGET
        if disrupted and condition.get("status") == "True":
            return str(condition.get("reason") or contract.DISRUPTION_TARGET)
    return ""


def pools(config: RouterConfig, matched: Iterable[str]) -> list[str]:
    """The pools routed: the operator's ``kubernetes.pools``, else the policy's list,
    else ``matched`` (the ModelPools its selector matches)."""
    source = config.kubernetes
    if source is not None and source.pools is not None:
        return sorted(source.pools)
    if config.policy.pools:
        return sorted(config.policy.pools)
    return sorted(matched)


def selector(labels: LabelSelector) -> str:
    """A label selector in the API's query syntax."""
    terms = [f"{k}={v}" for k, v in sorted(labels.match_labels.items())]
    for term in labels.match_expressions:
        values = ",".join(term.values)
        terms.append({
            "In": f"{term.key} in ({values})", "NotIn": f"{term.key} notin ({values})",
            "Exists": term.key, "DoesNotExist": f"!{term.key}",
        }[term.operator])  # fmt: skip
    return ",".join(terms)


def watch_specs(config: RouterConfig, routed: Iterable[str]) -> set[Spec]:
    """What to watch: the routed pools' pods (and EndpointSlices), the ModelPools a
    selector matches when the pools are not listed, the ConfigMap and key Secrets."""
    source = config.kubernetes
    if source is None:
        return set()
    ns, names = source.namespace, ",".join(sorted(routed))
    specs = {Spec("secrets", ns, field_selector=_named(n)) for n in config.secret_names()}
    if source.config_map:
        specs.add(Spec("configmaps", ns, field_selector=_named(source.config_map)))
    if source.pools is None and not config.policy.pools and config.policy.pool_selector:
        specs.add(Spec("modelpools", ns, label_selector=selector(config.policy.pool_selector)))
    if names:
        specs.add(Spec("pods", ns, label_selector=f"{contract.POOL} in ({names})"))
    if names and source.source == "endpointslices":
        specs.add(
            Spec("endpointslices", ns, label_selector=f"{contract.SERVICE_NAME} in ({names})")
        )
    return specs


def _named(name: str) -> str:
    return f"metadata.name={name}"
