"""The kinds the operator serves, as ``runtime.Kind`` descriptions bound to their reconcilers.

ModelPool: children labelled ``gpufleet.io/pool``, reconciled by
``controller.modelpool.reconciler`` on events, every ``resync_seconds`` and after each
autoscaler decision that changes what its status says (with the autoscaler's view: node
shapes and the decision). RoutingPolicy: children labelled
``gpufleet.io/routing-policy``, reconciled by ``controller.routingpolicy.policyreconciler``
on events, every ``policy_poll_seconds`` (its routers' ``/stats`` feed its status), and
whenever a ModelPool in its namespace appears, disappears or is relabelled (its
``poolSelector`` may now match differently). The autoscaler
(``controller.autoscaling.autoscaler``) runs beside them and shares its ``ScalingView``
with the pool reconciler.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.api.resources import ModelPool, RoutingPolicy
from gpufleet.api.routingpolicy import RoutingPolicyStatus
from gpufleet.controller import modelpool, routingpolicy, runtime
from gpufleet.controller.autoscaling import autoscaler
from gpufleet.controller.modelpool import netpolicy, reconciler, scalingreport
from gpufleet.controller.routingpolicy import policyreconciler, routerstats
from gpufleet.controller.workqueue import Key
from gpufleet.operatorconfig import OperatorConfig

MODEL_POOL = modelpool.KIND
ROUTING_POLICY = routingpolicy.KIND


def _pool_reconciler(view: scalingreport.ScalingView) -> runtime.Reconcile:
    async def reconcile(state: runtime.OperatorState, key: Key) -> None:
        await reconciler.reconcile(
            key,
            cache=state.kind(MODEL_POOL),
            client=state.client,
            config=state.config,
            clock=state.clock,
            scaling=view,
            routers=routing_policies(state, key),
        )

    return reconcile


def routing_policies(state: runtime.OperatorState, key: Key) -> tuple[str, ...]:
    """The RoutingPolicies of the pool's namespace that route it. An invalid policy
    counts as routing every pool of its namespace: its routers keep serving the last
    good configuration, which is not known here, and cutting them off would turn a
    typo into an outage (they are the operator's own routers either way)."""
    policies: runtime.KindState[RoutingPolicy, Any] = state.kind(ROUTING_POLICY)
    specs, invalid = {}, []
    for policy in policies.objects.values():
        if policy.namespace != key[0]:
            continue
        if policy.obj is None:
            invalid.append(policy.name)
        else:
            specs[policy.name] = policy.obj.spec
    routed = netpolicy.routing(key[1], specs, pool_labels(state, key[0]))
    return tuple(sorted({*routed, *invalid}))


def pool_labels(state: runtime.OperatorState, namespace: str) -> dict[str, dict[str, str]]:
    """Name → labels of the ModelPools the operator sees in ``namespace``."""
    pools = state.kind(MODEL_POOL)
    return {
        pool.name: dict(pool.labels)
        for pool in pools.objects.values()
        if pool.namespace == namespace
    }


def pool_models(state: runtime.OperatorState, namespace: str) -> dict[str, str]:
    """Name → served model name (``spec.model.name``) of the valid ModelPools in
    ``namespace``."""
    pools: runtime.KindState[ModelPool, Any] = state.kind(MODEL_POOL)
    return {
        pool.name: pool.obj.spec.model.name
        for pool in pools.objects.values()
        if pool.namespace == namespace and pool.obj is not None
    }


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


@dataclasses.dataclass(frozen=True, slots=True)
class Operator:
    """Every kind, in the order their loops start, and the loops beside them."""

    kinds: tuple[runtime.Kind[Any, Any], ...]
    background: tuple[runtime.Background, ...]


def build(config: OperatorConfig) -> Operator:
    """The kinds bound to their reconcilers, and the autoscaler that shares the pool
    reconciler's ``ScalingView``."""
    poller = routerstats.Poller(timeout=config.router_stats_timeout_seconds)
    view = scalingreport.ScalingView()
    pools = runtime.Kind(
        name=MODEL_POOL,
        plural="modelpools",
        owner_label=labels.POOL,
        model=ModelPool,
        status_model=ModelPoolStatus,
        reconcile=_pool_reconciler(view),
        follows=(ROUTING_POLICY,),
    )
    policies = runtime.Kind(
        name=ROUTING_POLICY,
        plural="routingpolicies",
        owner_label=labels.ROUTING_POLICY,
        model=RoutingPolicy,
        status_model=RoutingPolicyStatus,
        reconcile=_policy_reconciler(poller),
        follows=(MODEL_POOL,),
        requeue_seconds=config.policy_poll_seconds,
        close=poller.close,
    )
    scaler = autoscaler.Autoscaler(config, view=view, pools=MODEL_POOL, policies=ROUTING_POLICY)
    return Operator(kinds=(pools, policies), background=(scaler,))
