"""The children of a ModelPool as server-side-apply intents: Deployments, Service, PDB.

Pure. One Deployment ``<pool>-<variant>`` per feasible variant (pod from
``controller.podspec``), one Service named after the pool over all its variants' pods,
and one PodDisruptionBudget allowing one voluntary disruption at a time. Every child is
owned by the pool (``ownerReferences``, so deleting the pool lets the garbage collector
remove it) and carries ``gpufleet.io/spec-hash``: a digest of the intent itself, so a
changed intent is seen without comparing bodies. ``replicas`` is part of the intent
only while the operator owns the field (see ``controller.observe.replicas_owned_by_others``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TypeVar

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import bodies, podspec
from gpufleet.controller.variants import VariantDecision
from gpufleet.labels import deployment_name

PROGRESS_DEADLINE_MARGIN_SECONDS = 600
_C = TypeVar(
    "_C",
    bodies.Deployment,
    bodies.Service,
    bodies.PodDisruptionBudget,
    bodies.ConfigMap,
    bodies.ServiceAccount,
    bodies.Role,
    bodies.RoleBinding,
    bodies.RouterDeployment,
    bodies.NetworkPolicy,
)


@dataclasses.dataclass(frozen=True, slots=True)
class PoolRef:
    """The identity of the ModelPool (or, in ``controller.policyrender``, the
    RoutingPolicy) the children belong to."""

    name: str
    namespace: str
    uid: str


def owner_reference(pool: PoolRef, *, kind: str = "ModelPool") -> bodies.OwnerReference:
    return bodies.OwnerReference(
        apiVersion=common.API_VERSION,
        kind=kind,
        name=pool.name,
        uid=pool.uid,
        controller=True,
        blockOwnerDeletion=True,
    )


def child_metadata(
    pool: PoolRef, name: str, labels: dict[str, str], *, kind: str = "ModelPool"
) -> bodies.Metadata:
    """Metadata of a child named ``name``, controlled by the ``kind`` object ``pool``."""
    return bodies.Metadata(
        name=name,
        namespace=pool.namespace,
        labels=labels,
        ownerReferences=[owner_reference(pool, kind=kind)],
    )


def spec_hash(child: bodies.Child) -> str:
    """A digest of the intent, ignoring any spec-hash annotation already on it."""
    doc = json.loads(json.dumps(child))
    annotations = doc["metadata"].pop("annotations", {})
    annotations.pop(contract.SPEC_HASH, None)
    if annotations:
        doc["metadata"]["annotations"] = annotations
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_hash(child: _C) -> _C:
    digest = spec_hash(child)
    child["metadata"]["annotations"] = child["metadata"].get("annotations", {}) | {
        contract.SPEC_HASH: digest
    }
    return child


def variant_labels(pool: str, spec: ModelPoolSpec, decision: VariantDecision) -> dict[str, str]:
    spot = decision.variant.capacity_type == "spot"
    return (
        contract.variant_selector(pool, decision.name)
        | {
            contract.GPU: decision.gpu.name,
            contract.MODEL: contract.label_value(spec.model.name),
            contract.TENSOR_PARALLEL_SIZE: str(podspec.tensor_parallel_size(decision)),
            contract.COMPONENT: "model-server",
        }
        | ({contract.CAPACITY_TYPE: "spot"} if spot else {})
    )


def _template_annotations(spec: ModelPoolSpec) -> dict[str, str]:
    catalog = spec.model.catalog_name
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.serving.port),
        "prometheus.io/path": "/metrics",
        contract.MODEL_ANNOTATION: spec.model.name,
    } | ({contract.CATALOG_MODEL_ANNOTATION: catalog} if catalog else {})


def deployment(
    pool: PoolRef,
    spec: ModelPoolSpec,
    decision: VariantDecision,
    *,
    replicas: int | None,
    agent_image: str = podspec.DEFAULT_AGENT_IMAGE,
) -> bodies.Deployment:
    """The Deployment of a feasible variant; ``replicas`` None leaves the field to others;
    ``agent_image`` runs the GPU health sidecar."""
    labels = variant_labels(pool.name, spec, decision)
    startup = podspec.startup_budget_seconds(decision.plan.weights_bytes)
    body_spec = bodies.DeploymentSpec(
        selector={"matchLabels": contract.variant_selector(pool.name, decision.name)},
        # Surge one replica and never drop below the desired count: a rollout waits for
        # spare GPUs rather than taking serving capacity away.
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        revisionHistoryLimit=3,
        progressDeadlineSeconds=startup + PROGRESS_DEADLINE_MARGIN_SECONDS,
        template={
            "metadata": {"labels": labels, "annotations": _template_annotations(spec)},
            "spec": podspec.pod_spec(spec, decision, agent_image=agent_image),
        },
    )
    if replicas is not None:
        body_spec["replicas"] = replicas
    name = deployment_name(pool.name, decision.name)
    return with_hash(
        bodies.Deployment(
            apiVersion="apps/v1",
            kind="Deployment",
            metadata=child_metadata(pool, name, labels),
            spec=body_spec,
        )
    )


def _pool_labels(pool: str) -> dict[str, str]:
    return contract.pool_labels(pool) | {contract.COMPONENT: "model-server"}


def service(pool: PoolRef, spec: ModelPoolSpec) -> bodies.Service:
    """One ClusterIP Service over every variant's pods, named after the pool."""
    port = bodies.ServicePort(
        name=podspec.PORT_NAME, port=spec.serving.port, targetPort=podspec.PORT_NAME, protocol="TCP"
    )
    return with_hash(
        bodies.Service(
            apiVersion="v1",
            kind="Service",
            metadata=child_metadata(pool, pool.name, _pool_labels(pool.name)),
            spec={
                "type": "ClusterIP",
                "selector": contract.pool_labels(pool.name),
                "ports": [port],
            },
        )
    )


def disruption_budget(pool: PoolRef) -> bodies.PodDisruptionBudget:
    """At most one of the pool's pods voluntarily disrupted (drained, evicted) at a time."""
    return with_hash(
        bodies.PodDisruptionBudget(
            apiVersion="policy/v1",
            kind="PodDisruptionBudget",
            metadata=child_metadata(pool, pool.name, _pool_labels(pool.name)),
            spec={
                "selector": {"matchLabels": contract.pool_labels(pool.name)},
                "maxUnavailable": 1,
            },
        )
    )
