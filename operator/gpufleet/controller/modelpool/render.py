"""The children of a ModelPool as server-side-apply intents: Deployments, Service, PDB.

Pure. One Deployment ``<pool>-<variant>`` per feasible variant (pod from ``podspec``),
one Service named after the pool over all its variants' pods, and one
PodDisruptionBudget allowing one voluntary disruption at a time. Every child is owned
by the pool and carries the spec hash (``controller.owned``). ``replicas`` is part of
the intent only while the operator owns the field (see ``plan.replicas_intent``).
"""

from __future__ import annotations

from gpufleet import labels as contract
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import bodies, owned
from gpufleet.controller.modelpool import podspec
from gpufleet.controller.modelpool.variants import VariantDecision
from gpufleet.labels import deployment_name

# A ModelPool is the owner of its children.
PoolRef = owned.OwnerRef

PROGRESS_DEADLINE_MARGIN_SECONDS = 600


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
    return owned.with_hash(
        bodies.Deployment(
            apiVersion="apps/v1",
            kind="Deployment",
            metadata=owned.child_metadata(pool, name, labels),
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
    return owned.with_hash(
        bodies.Service(
            apiVersion="v1",
            kind="Service",
            metadata=owned.child_metadata(pool, pool.name, _pool_labels(pool.name)),
            spec={
                "type": "ClusterIP",
                "selector": contract.pool_labels(pool.name),
                "ports": [port],
            },
        )
    )


def disruption_budget(pool: PoolRef) -> bodies.PodDisruptionBudget:
    """At most one of the pool's pods voluntarily disrupted (drained, evicted) at a time."""
    return owned.with_hash(
        bodies.PodDisruptionBudget(
            apiVersion="policy/v1",
            kind="PodDisruptionBudget",
            metadata=owned.child_metadata(pool, pool.name, _pool_labels(pool.name)),
            spec={
                "selector": {"matchLabels": contract.pool_labels(pool.name)},
                "maxUnavailable": 1,
            },
        )
    )
