"""Load against the targets, in tokens per second of replica capacity. Pure.

A variant's ready replicas are loaded ``u`` times their target: the largest of KV-cache
usage over ``targetKvCacheUsage`` and waiting requests per replica over
``targetWaitingRequests`` (with a target of 0, any waiting request asks for room for all
of them: ``1 + waiting / running``) and, with ``targetTtftSeconds``, the worst replica's
p90 time to first token over the target — while the variant has requests running or
waiting, since an idle replica's last minute says nothing about load — as a
HorizontalPodAutoscaler takes the largest of its metrics. The pool needs the sum over
variants of ready replicas x speed x ``u``, plus room for the requests the routers queue
or hold: one replica of the variant that would be started per ``targetWaitingRequests``
requests (at least one).

Capacity is ready replicas plus coming ones (cold-start aware): pods still loading that
started less than ``coldStartSeconds`` ago, and replicas asked for but without a pod yet
(Pending or not created) while the variant's last scale-up is that recent — or when the
history has none (the operator restarted). A replica loading for longer than the cold
start no longer counts, so a stuck start can be replaced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gpufleet.scaling import model


def utilisation(variant: model.Variant, policy: model.Policy) -> float:
    """Load of a variant's ready replicas relative to the targets (1.0 = on target)."""
    s = variant.signals
    if s is None or variant.ready == 0:
        return 0.0
    kv = s.kv_usage / policy.target_kv_usage
    if policy.target_waiting > 0:
        waiting = s.waiting / variant.ready / policy.target_waiting
    else:
        waiting = 1 + s.waiting / max(s.running, 1.0) if s.waiting > 0 else 0.0
    return max(kv, waiting, _ttft(s, policy))


def _ttft(s: model.Signals, policy: model.Policy) -> float:
    if policy.target_ttft_s is None or s.ttft_p90_s is None:
        return 0.0
    if s.running <= 0 and s.waiting <= 0:
        return 0.0
    return s.ttft_p90_s / policy.target_ttft_s


def need(pool: model.Pool, speed: Mapping[str, float], *, started_speed: float) -> float:
    """Capacity (tokens/s) the pool's load needs at the targets, over the variants in
    ``speed`` (the feasible ones); ``started_speed`` is the speed of a replica of the
    variant that would be started for held requests."""
    engines = sum(
        v.ready * speed[v.name] * utilisation(v, pool.policy)
        for v in pool.variants
        if v.name in speed
    )
    per_replica = max(pool.policy.target_waiting, 1)
    return engines + math.ceil(pool.demand.total / per_replica) * started_speed


def coming(
    variant: model.Variant, history: model.History, *, now: float, cold_start_s: float
) -> int:
    """Replicas of ``variant`` counted as capacity on the way."""
    loading = sum(1 for t in variant.loading_since if now - t < cold_start_s)
    unstarted = max(0, variant.replicas - variant.ready - len(variant.loading_since))
    ups = [e.at for e in history.events if e.variant == variant.name and e.delta > 0]
    if ups and now - max(ups) >= cold_start_s:
        unstarted = 0
    return loading + unstarted


def present(
    variant: model.Variant, history: model.History, *, now: float, cold_start_s: float
) -> int:
    """Replicas that serve now or soon (never more than ``replicas``)."""
    ready = min(variant.ready, variant.replicas)
    on_the_way = coming(variant, history, now=now, cold_start_s=cold_start_s)
    return min(variant.replicas, ready + on_the_way)


def busy(pool: model.Pool) -> bool:
    """Whether the pool has any work: running, waiting, generating, queued or held."""
    if pool.demand.total > 0:
        return True
    return any(
        s.running > 0 or s.waiting > 0 or s.tokens_per_second > 0
        for s in (v.signals for v in pool.variants)
        if s is not None
    )
