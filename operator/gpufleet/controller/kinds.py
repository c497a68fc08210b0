"""The kinds the operator serves, as ``runtime.Kind`` descriptions bound to their reconcilers.

ModelPool: children labelled ``gpufleet.io/pool``, reconciled by ``controller.modelpool.reconciler``
on events, every ``resync_seconds`` and after each autoscaler decision that changes what
its status says (with the autoscaler's view: node shapes and the decision).
RoutingPolicy: children labelled ``gpufleet.io/routing-policy``, reconciled by
``controller.routingpolicy.policyreconciler`` on events, every ``policy_poll_seconds`` (its routers'
``/stats`` feed its status), and whenever a ModelPool in its namespace appears,
disappears or is relabelled (its ``poolSelector`` may now match differently).
"""

from __future__ import annotations

from typing import Any

import pydantic

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.api.routingpolicy import RoutingPolicySpec, RoutingPolicyStatus
from gpufleet.controller import runtime
from gpufleet.controller.modelpool import netpolicy, reconciler
from gpufleet.controller.routingpolicy import policyreconciler, routerstats
from gpufleet.controller.workqueue import Key
from gpufleet.operatorconfig import OperatorConfig

MODEL_POOL = "ModelPool"
ROUTING_POLICY = "RoutingPolicy"


async def _reconcile_pool(state: runtime.OperatorState, key: Key) -> None:
    cache = state.kind(MODEL_POOL)
    await reconciler.reconcile(
        key,
        cache=cache,
        client=state.client,
        config=state.config,
        clock=state.clock,
        scaling=state.scaling,
        routers=routing_policies(state, key),
    )


def routing_policies(state: runtime.OperatorState, key: Key) -> tuple[str, ...]:
    """The RoutingPolicies of the pool's namespace that route it. An invalid policy
    counts as routing every pool of its namespace: its routers keep serving the last
    good configuration, which is not known here, and cutting them off would turn a
    typo into an outage (they are the operator's own routers either way)."""
    policies = state.kind(ROUTING_POLICY)
    specs, invalid = {}, []
    for policy in policies.keys_in(key[0]):
        raw = policies.body(policy) or {}
        try:
            specs[policy[1]] = RoutingPolicySpec.model_validate(raw.get("spec") or {})
        except pydantic.ValidationError:
            invalid.append(policy[1])
    routed = netpolicy.routing(key[1], specs, pool_labels(state, key[0]))
    return tuple(sorted({*routed, *invalid}))


def pool_labels(state: runtime.OperatorState, namespace: str) -> dict[str, dict[str, str]]:
    """Name → labels of the ModelPools the operator sees in ``namespace``."""
    pools = state.kind(MODEL_POOL)
    return {
        key[1]: dict(pools.objects[key].get("metadata", {}).get("labels") or {})
        for key in pools.keys_in(namespace)
    }


def pool_models(state: runtime.OperatorState, namespace: str) -> dict[str, str]:
    """Name → served model name (``spec.model.name``) of the ModelPools in ``namespace``."""
    pools = state.kind(MODEL_POOL)
    out = {}
    for key in pools.keys_in(namespace):
        model = (pools.objects[key].get("spec") or {}).get("model") or {}
        if isinstance(model, dict) and isinstance(model.get("name"), str):
            out[key[1]] = model["name"]
    return out


def _policy_reconciler(poller: routerstats.Poller) -> runtime.Reconcile:
    async def reconcile(state: runtime.OperatorState, key: Key) -> None:
        await policyreconciler.reconcile(
            key,
            cache=state.kind(ROUTING_POLICY),
            pools=pool_labels(state, key[0]),
            models=pool_models(state, key[0]),
            client=state.client,
            poller=poller,
            config=state.config,
            clock=state.clock,
        )

    return reconcile


def build(config: OperatorConfig) -> tuple[runtime.Kind[Any], ...]:
    """Every kind, in the order their loops start."""
    poller = routerstats.Poller(timeout=config.router_stats_timeout_seconds)
    pools = runtime.Kind(
        name=MODEL_POOL,
        plural="modelpools",
        owner_label=labels.POOL,
        status_model=ModelPoolStatus,
        reconcile=_reconcile_pool,
        follows=(ROUTING_POLICY,),
    )
    policies = runtime.Kind(
        name=ROUTING_POLICY,
        plural="routingpolicies",
        owner_label=labels.ROUTING_POLICY,
        status_model=RoutingPolicyStatus,
        reconcile=_policy_reconciler(poller),
        follows=(MODEL_POOL,),
        requeue_seconds=config.policy_poll_seconds,
        close=poller.close,
    )
    return (pools, policies)
