"""The label and annotation contract between the operator, the router and the twin.

Pure constants and the few helpers that read or build them. The operator writes these
on what it creates (``gpufleet.controller.modelpool.render``,
``gpufleet.controller.routingpolicy.policyrender``); the router reads them to know each
endpoint's pool, GPU generation, tensor-parallel size, served model and price
(``gpufleet.router.discovery``); the dev cluster's pod runner and Prometheus
configuration read them to simulate and scrape model servers.
Nothing else spells a ``gpufleet.io/`` key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gpufleet.apigroup import GROUP

FIELD_MANAGER = "gpufleet"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gpufleet"
COMPONENT = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED = {MANAGED_BY: MANAGED_BY_VALUE}

# Labels of a ModelPool's children and pods. ``pool`` and ``variant`` (with
# ``managed-by``) are the immutable Deployment selector; the rest describe the pod.
POOL = f"{GROUP}/pool"
VARIANT = f"{GROUP}/variant"
GPU = f"{GROUP}/gpu"
MODEL = f"{GROUP}/model"
TENSOR_PARALLEL_SIZE = f"{GROUP}/tensor-parallel-size"
# ``spot`` on the pods of a variant with ``capacityType: spot``; absent = on-demand (so
# the label's introduction rolled no existing pod).
CAPACITY_TYPE = f"{GROUP}/capacity-type"
# Labels of a RoutingPolicy's children and router pods.
ROUTING_POLICY = f"{GROUP}/routing-policy"

# Annotations on model-server pods (values a label cannot hold).
MODEL_ANNOTATION = f"{GROUP}/model"  # the served name, verbatim
CATALOG_MODEL_ANNOTATION = f"{GROUP}/catalog-model"  # planner catalog name, if any
COST_ANNOTATION = f"{GROUP}/cost-per-gpu-hour"  # USD per GPU-hour, decimal
# KV-cache tokens one replica holds, as the operator planned the pod's variant when the
# pod was created: the router reads the operator's plan from it instead of planning.
KV_CACHE_TOKENS_ANNOTATION = f"{GROUP}/kv-cache-tokens"
# The pod's node is about to go away (a spot interruption notice, a scale-down): the
# value says why. Any node-termination tool may set it; routers stop sending new work.
INTERRUPTION_ANNOTATION = f"{GROUP}/interruption"
# On every child: a digest of the operator's intent (drift detection).
SPEC_HASH = f"{GROUP}/spec-hash"
# On router pods: a digest of the configuration they were started with.
CONFIG_HASH = f"{GROUP}/config-hash"

# The Kubernetes labels the router reads alongside ours.
SERVICE_NAME = "kubernetes.io/service-name"  # EndpointSlice → Service
POD_TEMPLATE_HASH = "pod-template-hash"  # pod → its ReplicaSet's name suffix
# The pod condition Kubernetes sets before it evicts, preempts or (graceful node
# shutdown) terminates a pod (PodDisruptionConditions, GA in 1.31).
DISRUPTION_TARGET = "DisruptionTarget"

# The key of a RoutingPolicy's ConfigMap that holds the router's configuration: the
# operator writes it (``controller.routingpolicy.policyrender``) and mounts it as the router's file,
# which the router watches and applies live (``router.liveconfig``).
ROUTER_CONFIG_KEY = "router.yaml"

# The GPU health agent's container port on model-server pods: routers find its /health
# by this name (a container port name: at most 15 characters).
GPU_AGENT_PORT_NAME = "gpu-agent"

MODEL_SERVER = "model-server"
ROUTER = "router"

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value: unsafe runs become '_', at most 63 characters,
    alphanumeric at both ends (``meta-llama/Llama-3.1-8B`` → ``meta-llama_Llama-3.1-8B``)."""
    return _LABEL_UNSAFE.sub("_", text)[:63].strip("._-")


def pool_labels(pool: str) -> dict[str, str]:
    """Labels every child of ``pool`` carries (and selects on)."""
    return {MANAGED_BY: MANAGED_BY_VALUE, POOL: pool}


def variant_selector(pool: str, variant: str) -> dict[str, str]:
    """The immutable selector of a variant's Deployment."""
    return pool_labels(pool) | {VARIANT: variant}


def deployment_name(pool: str, variant: str) -> str:
    """The name of a variant's Deployment."""
    return f"{pool}-{variant}"


def policy_labels(policy: str) -> dict[str, str]:
    """Labels every child of RoutingPolicy ``policy`` carries (and selects on)."""
    return {MANAGED_BY: MANAGED_BY_VALUE, ROUTING_POLICY: policy}


def router_name(policy: str) -> str:
    """The name of a RoutingPolicy's router Deployment, Service, ConfigMap, account."""
    return f"{policy}-router"


def owned_by_pool(pod_meta: Mapping[str, object]) -> bool:
    """Whether a pod (its ``metadata``, camelCase or snake_case keys) was made by one of
    its pool's own Deployments: controlled by the ReplicaSet
    ``<pool>-<variant>-<pod-template-hash>``. A hand-made pod that copies the labels is
    not, nor is one of a Deployment someone else named after the pool."""
    labels = pod_meta.get("labels") or {}
    assert isinstance(labels, Mapping)
    pool, variant = labels.get(POOL), labels.get(VARIANT)
    template = labels.get(POD_TEMPLATE_HASH)
    if not (pool and variant and template):
        return False
    expected = f"{deployment_name(str(pool), str(variant))}-{template}"
    owners = pod_meta.get("ownerReferences") or pod_meta.get("owner_references") or []
    assert isinstance(owners, list)
    return any(
        isinstance(o, Mapping)
        and o.get("kind") == "ReplicaSet"
        and o.get("controller") is True
        and o.get("name") == expected
        for o in owners
    )


def cost_value(cost_per_gpu_hour: float) -> str:
    """An annotation value for a price (shortest exact decimal)."""
    return repr(float(cost_per_gpu_hour))


def parse_cost(value: object) -> float | None:
    """A price annotation's value; None when absent or not a finite non-negative number."""
    try:
        cost = float(str(value))
    except ValueError:
        return None
    return cost if value is not None and 0.0 <= cost < float("inf") else None


def parse_tokens(value: object) -> int | None:
    """A token-count annotation's value; None when absent or not a positive integer."""
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() and int(text) > 0 else None
