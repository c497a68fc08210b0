"""Reconcile, the pure half: desired children versus observed ones → what to write.

``desired`` renders the intents for a pool; ``diff`` compares them with what the
watches have seen and returns a ``Plan``: the intents to apply (missing, changed since
last applied — the spec-hash differs — or edited out of band — the live object no longer
contains the intent) and the children to delete (a variant removed or no longer
feasible). An empty plan means nothing is written. While the hub-token Secret is missing
the Deployments are *held*: neither created, changed nor deleted, since their pods could
not start (and running ones still work). ``pod_patches`` says which running pods lack
their variant's price or planned KV-cache annotation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.api.variant import Variant
from gpufleet.controller import bodies, observe
from gpufleet.controller.modelpool import netpolicy, podspec, render
from gpufleet.controller.modelpool.variants import VariantDecision
from gpufleet.labels import deployment_name


def autoscaled(spec: ModelPoolSpec, variant: Variant) -> bool:
    """Whether the variant's replica count is the autoscaler's to choose."""
    top = variant.max_replicas
    return spec.autoscaling.enabled and top is not None and top > variant.min_replicas


def replicas_intent(
    spec: ModelPoolSpec, variant: Variant, observed: observe.ObservedChild | None
) -> int | None:
    """``minReplicas`` while the operator owns replicas; None once another manager (the
    autoscaler) has taken the field of an autoscaled variant, so applies never fight it."""
    others = observed.replicas_managers - {labels.FIELD_MANAGER} if observed else frozenset()
    return None if others and autoscaled(spec, variant) else variant.min_replicas


def desired(
    pool: render.PoolRef,
    spec: ModelPoolSpec,
    decisions: Iterable[VariantDecision],
    observed: Mapping[tuple[str, str], observe.ObservedChild],
    *,
    agent_image: str = podspec.DEFAULT_AGENT_IMAGE,
    ingress: netpolicy.Ingress | None = None,
) -> tuple[bodies.Child, ...]:
    """Service, PodDisruptionBudget, the NetworkPolicy (with ``ingress``: who may reach
    the pods; None: no policy), then one Deployment per feasible variant, whose GPU
    health sidecars run ``agent_image``. The policy comes before the Deployments, so no
    pod of a new pool is ever reachable from everywhere."""
    children: list[bodies.Child] = [render.service(pool, spec), render.disruption_budget(pool)]
    if ingress is not None:
        children.append(
            netpolicy.pool_policy(pool, spec, routers=ingress.routers, scraper=ingress.scraper)
        )
    for decision in decisions:
        if not decision.feasible:
            continue
        live = observed.get(("Deployment", deployment_name(pool.name, decision.name)))
        replicas = replicas_intent(spec, decision.variant, live)
        children.append(
            render.deployment(pool, spec, decision, replicas=replicas, agent_image=agent_image)
        )
    return tuple(children)


@dataclasses.dataclass(frozen=True, slots=True)
class PodPatch:
    """Annotations to merge into a model-server pod (a metadata patch: it keeps running)."""

    pod: str
    annotations: Mapping[str, str]


def _kv_tokens(decisions: Iterable[VariantDecision]) -> dict[str, str]:
    return {d.name: str(d.plan.kv_cache_tokens) for d in decisions if d.plan.kv_cache_tokens > 0}


def pod_patches(
    spec: ModelPoolSpec,
    decisions: Iterable[VariantDecision],
    pods: Iterable[observe.ObservedPod],
) -> tuple[PodPatch, ...]:
    """What the running pods' annotations lack of the pool: the price of a variant that
    sets ``costPerGpuHour`` where the pod says otherwise, and the KV-cache tokens the
    variant was planned for where the pod has none (``labels.KV_CACHE_TOKENS_ANNOTATION``:
    how the plan reaches the routers, which do not read ModelPools).

    Both live on the pods, not in the pod template, so neither restarts anything. A
    variant without a price leaves whatever price its pods carry alone; a pod keeps the
    KV figure it was first given — the plan it was created under (a changed plan changes
    the template, so new pods carry the new figure).
    """
    prices = {
        v.name: labels.cost_value(v.cost_per_gpu_hour)
        for v in spec.variants
        if v.cost_per_gpu_hour is not None
    }
    tokens = _kv_tokens(decisions)
    out = []
    for p in pods:
        want: dict[str, str] = {}
        if p.variant in prices and p.cost != prices[p.variant]:
            want[labels.COST_ANNOTATION] = prices[p.variant]
        if p.variant in tokens and p.kv_cache_tokens is None:
            want[labels.KV_CACHE_TOKENS_ANNOTATION] = tokens[p.variant]
        if want and p.phase != "Succeeded":
            out.append(PodPatch(pod=p.name, annotations=want))
    return tuple(out)
