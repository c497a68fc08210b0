"""Reconcile one ModelPool: gather (caches, one Secret read) → plan (pure) → execute → pod
annotations (price, planned KV cache) → status.

The I/O half of the reconcile; every decision is made by ``variants``, ``plan``,
``controller.owned`` and ``status``. Failures leave as Kopf's exception types, which the
worker loop (``controller.runtime``) treats as Kopf would treat them in a
handler: ``kopf.TemporaryError`` → retried after its ``delay``; ``kopf.PermanentError``
→ the pool's status says why, and the pool is left alone until its spec changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable

import kopf

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.api.resources import ModelPool
from gpufleet.controller import conditions, kube, owned, writes
from gpufleet.controller.cache import Cache, Cached
from gpufleet.controller.modelpool import netpolicy, plan, render, scalingreport, status, variants
from gpufleet.controller.workqueue import Key
from gpufleet.operatorconfig import OperatorConfig

PoolCache = Cache[ModelPool, ModelPoolStatus]
Pool = Cached[ModelPool, ModelPoolStatus]


def _valid(found: Pool) -> ModelPool:
    if found.obj is None:
        raise kopf.PermanentError(found.problem)
    return found.obj


def _ingress(config: OperatorConfig, routers: tuple[str, ...]) -> netpolicy.Ingress | None:
    if not config.network_policies:
        return None
    scraper = netpolicy.Scraper(config.metrics_scraper_namespace, config.scraper_labels)
    return netpolicy.Ingress(routers=routers, scraper=scraper)


def _annotate(client: kube.Kube, namespace: str, patches: tuple[plan.PodPatch, ...]) -> None:
    for patch in patches:
        client.annotate_pod(namespace, patch.pod, patch.annotations)


async def reconcile(
    key: Key,
    *,
    cache: PoolCache,
    client: kube.Kube,
    config: OperatorConfig,
    clock: Callable[[], datetime.datetime],
    scaling: scalingreport.ScalingView | None = None,
    routers: tuple[str, ...] = (),
) -> None:
    """Bring pool ``key``'s children and status to its spec; no-op if the pool is gone.

    ``scaling`` is the autoscaler's view: TP is planned for the node shape it saw, and
    the status shows its decision and the free GPUs per generation. ``routers`` names
    the RoutingPolicies that route the pool: their routers are what its NetworkPolicy
    admits (with ``config.network_policies``)."""
    scaling = scaling or scalingreport.ScalingView()
    found = cache.get(key)
    if found is None:
        return
    pool = _valid(found)
    spec, meta = pool.spec, pool.metadata
    ref = render.PoolRef(name=meta.name, namespace=key[0], uid=meta.uid or "")
    decisions = variants.plan_pool(spec, gpus_per_node=scaling.shapes())
    problems = variants.spec_problems(meta.name, spec, config=config)
    secret_ref = spec.hub_token_secret_ref
    missing = (
        await asyncio.to_thread(client.secret_problem, key[0], secret_ref) if secret_ref else ""
    )
    if not problems:
        observed = cache.children(key)
        intents = plan.desired(
            ref, spec, decisions, observed, agent_image=config.agent_image,
            ingress=_ingress(config, routers),
        )  # fmt: skip
        todo = owned.diff(intents, observed, hold_deployments=bool(missing))
        annotations = plan.pod_patches(spec, decisions, cache.pods(key))
        try:
            await asyncio.to_thread(writes.execute, client, cache, todo, observed)
            await asyncio.to_thread(_annotate, client, key[0], annotations)
        except kube.Transient as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
        except kube.Rejected as exc:
            problems = (f"the API server rejected a child: {exc}",)
    seen = _Seen(decisions, problems, missing, scaling)
    await _report(found, pool, seen, cache, client, clock)
    if problems:
        raise kopf.PermanentError("; ".join(problems))


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    decisions: tuple[variants.VariantDecision, ...]
    problems: tuple[str, ...]
    missing: str
    scaling: scalingreport.ScalingView


async def _report(
    found: Pool,
    pool: ModelPool,
    planned: _Seen,
    cache: PoolCache,
    client: kube.Kube,
    clock: Callable[[], datetime.datetime],
) -> None:
    """Write the status when it changed, and an Event per condition that flipped."""
    key = found.key
    decisions, problems, missing = planned.decisions, planned.problems, planned.missing
    children = cache.children(key)
    deployments = {
        d.name: children[("Deployment", labels.deployment_name(key[1], d.name))]
        for d in decisions
        if ("Deployment", labels.deployment_name(key[1], d.name)) in children
    }
    observed = status.Observation(
        generation=pool.metadata.generation or 0,
        deployments=deployments,
        pods=cache.pods(key),
        missing_secret=missing,
        problems=problems,
        scaling=planned.scaling.report(key),
        generations=scalingreport.generations(
            planned.scaling.nodes, (v.gpu for v in pool.spec.variants)
        ),
    )
    previous = cache.previous_status(key)
    new = status.compute(pool.spec, decisions, observed, previous=previous, now=clock())
    if new == previous:
        return
    try:
        version = await asyncio.to_thread(client.patch_status, "modelpools", key[0], key[1], new)
    except kube.Transient as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    cache.remember_status(key, new, version)
    at = conditions.rfc3339(clock())
    for event in conditions.transitions(previous, new):
        await asyncio.to_thread(client.event, found, event, at=at)
