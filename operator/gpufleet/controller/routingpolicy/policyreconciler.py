"""Reconcile one RoutingPolicy: render (pure) → apply and prune → poll routers → status.

The I/O half; decisions are ``policyrender`` (children, problems),
``controller.owned.diff`` (what to write) and ``policystatus`` (the status). The policy
comes parsed from the watch (``controller.cache``). A policy the operator cannot
realise — pydantic rejects it, or ``policyrender.problems``
names a field — leaves every child as it is: the ConfigMap keeps the last good
``router.yaml``, so the routers keep serving it, and the status says Degraded and why.
Nothing here raises ``kopf.PermanentError``: the policy is polled every few seconds
(its routers' ``/stats``) whatever its state, and a fixed spec is picked up by the next
reconcile.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping

import kopf

from gpufleet import labels
from gpufleet.api.resources import RoutingPolicy
from gpufleet.api.routingpolicy import RoutingPolicySpec, RoutingPolicyStatus
from gpufleet.controller import conditions, kube, observe, owned, selection, writes
from gpufleet.controller.cache import Cache, Cached
from gpufleet.controller.routingpolicy import policyrender, policystatus
from gpufleet.controller.routingpolicy.routerstats import Poller
from gpufleet.controller.workqueue import Key
from gpufleet.operatorconfig import OperatorConfig

PolicyCache = Cache[RoutingPolicy, RoutingPolicyStatus]
Policy = Cached[RoutingPolicy, RoutingPolicyStatus]


async def _apply(
    key: Key,
    policy: RoutingPolicy,
    pools: tuple[str, ...],
    *,
    models: Mapping[str, str],
    cache: PolicyCache,
    client: kube.Kube,
    config: OperatorConfig,
) -> None:
    meta = policy.metadata
    ref = policyrender.PolicyRef(name=meta.name, namespace=key[0], uid=meta.uid or "")
    intents = policyrender.children(
        ref,
        policy.spec,
        pools,
        models=models,
        generation=meta.generation or 0,
        image=config.router_image,
        discovery=config.router_discovery,
    )
    observed = cache.children(key)
    todo = owned.diff(intents, observed)
    try:
        await asyncio.to_thread(writes.execute, client, cache, todo, observed)
    except kube.Transient as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


async def _realise(
    key: Key,
    policy: RoutingPolicy,
    pools: Mapping[str, Mapping[str, str]],
    models: Mapping[str, str],
    cache: PolicyCache,
    client: kube.Kube,
    config: OperatorConfig,
) -> tuple[RoutingPolicySpec, tuple[str, ...], tuple[str, ...]]:
    """Apply the children unless the spec has problems: (spec, problems, pools routed)."""
    spec = policy.spec
    ref = policyrender.PolicyRef(name=key[1], namespace=key[0], uid=policy.metadata.uid or "")
    problems = (
        policyrender.problems(ref, spec)
        + policyrender.image_problems(spec, config.allowed_image_prefixes)
        + policyrender.prometheus_problems(spec, allow_local=config.allow_local_prometheus)
    )
    resolved = selection.resolve_pools(spec, pools)
    if not problems:
        try:
            await _apply(
                key, policy, resolved, models=models, cache=cache, client=client, config=config
            )
        except kube.Rejected as exc:
            problems = (f"the API server rejected a router child: {exc}",)
    return spec, problems, resolved


def _routers(cache: PolicyCache, key: Key) -> list[observe.ObservedPod]:
    """The ready pods of the policy's own router Deployment (by owner, not by label)."""
    pods = cache.owned_pods(key, labels.router_name(key[1]))
    return [p for p in pods if p.ready and p.ip]


async def reconcile(
    key: Key,
    *,
    cache: PolicyCache,
    pools: Mapping[str, Mapping[str, str]],
    client: kube.Kube,
    poller: Poller,
    models: Mapping[str, str] | None = None,
    config: OperatorConfig,
    clock: Callable[[], datetime.datetime],
) -> None:
    """Bring policy ``key``'s children to its spec and write its status; ``pools`` are the
    labels of the ModelPools in its namespace, by name, ``models`` their served model
    names (for scale from zero). No-op if the policy is gone."""
    found = cache.get(key)
    if found is None:
        return
    policy = found.obj if found.obj is not None else found.problem
    spec: RoutingPolicySpec | None
    problems: tuple[str, ...]
    resolved: tuple[str, ...]
    if isinstance(policy, str):
        spec, problems, resolved = None, (policy,), ()
    else:
        spec, problems, resolved = await _realise(
            key, policy, pools, models or {}, cache, client, config
        )
    port = spec.router.port if spec is not None else 8080
    reports = await poller.poll(_routers(cache, key), port=port)
    await _report(found, spec, resolved, problems, reports, cache, client, clock)


async def _report(
    found: Policy,
    spec: RoutingPolicySpec | None,
    pools: tuple[str, ...],
    problems: tuple[str, ...],
    reports: list[policystatus.RouterReport | str],
    cache: PolicyCache,
    client: kube.Kube,
    clock: Callable[[], datetime.datetime],
) -> None:
    """Write the status when it changed, and an Event per condition that flipped."""
    key = found.key
    children = cache.children(key)
    deployment = children.get(("Deployment", labels.router_name(key[1])))
    previous = cache.previous_status(key)
    new = policystatus.compute(
        spec,
        generation=found.generation,
        pools=pools,
        deployment=deployment,
        reports=reports,
        problems=problems,
        previous=previous,
        now=clock(),
    )
    if new == previous:
        return
    try:
        version = await asyncio.to_thread(
            client.patch_status, "routingpolicies", key[0], key[1], new
        )
    except kube.Transient as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    cache.remember_status(key, new, version)
    at = conditions.rfc3339(clock())
    for event in policystatus.transitions(previous, new):
        await asyncio.to_thread(client.event, found, event, at=at)
