"""The ModelPool status, computed from the plan and what the watches observed.

Pure; the clock is an argument. Follows the Kubernetes API conventions: conditions
``Ready``, ``Progressing`` and ``Degraded`` with a CamelCase ``reason`` and a human
``message``; ``lastTransitionTime`` moves only when a condition's status flips (a new
message alone keeps it), so computing the status of an unchanged pool yields an equal
value and nothing is written. Per variant: the planner's TP and KV capacity, desired and
ready replicas, and a ``reason`` starting ``Infeasible:`` (the planner's words),
``Unschedulable:`` (the scheduler's message of a Pending pod) or ``SecretMissing:``.
A variant gpufleet's autoscaler sizes shows its decision (``desiredReplicas``), the
``scalingReason`` and ``lastScaleTime``; the pool shows the free GPUs per generation the
autoscaler sees. While a variant asks for a replica range a fourth condition,
``ScalingActive``, says who sizes it: True (``Scaling``, or ``BoundsOnly`` without
Prometheus) when gpufleet's autoscaler does; False with ``SignalsUnavailable`` while it
holds for want of signals, ``AutoscalerStarting`` before its first decision, or
``ExternalAutoscaler`` with ``mode: external``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence

from gpufleet.api.modelpool import (
    GenerationStatus,
    ModelPoolSpec,
    ModelPoolStatus,
    VariantStatus,
)
from gpufleet.controller import conditions, observe
from gpufleet.controller.modelpool import plan, scalingreport
from gpufleet.controller.modelpool.variants import VariantDecision


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """Everything the status is computed from, besides the spec and the plans."""

    generation: int
    deployments: Mapping[str, observe.ObservedChild]  # by variant name
    pods: Sequence[observe.ObservedPod]
    missing_secret: str = ""  # why the hub-token Secret cannot be used; empty when it can
    problems: tuple[str, ...] = ()  # spec_problems(); non-empty = nothing was planned
    scaling: scalingreport.PoolReport | None = None  # the autoscaler's latest decision
    generations: tuple[GenerationStatus, ...] = ()  # free GPUs of the variants' generations


def _scaled(
    base: VariantStatus, seen: Observation, previous: VariantStatus | None
) -> VariantStatus:
    """``base`` with the autoscaler's decision on the variant, when it made one."""
    said = seen.scaling.variants.get(base.name) if seen.scaling else None
    if said is None:
        return base
    last = previous.last_scale_time if previous is not None else None
    if said.last_scale:
        last = conditions.rfc3339_epoch(said.last_scale)
    return base.model_copy(
        update={
            "desired_replicas": said.desired,
            "scaling_reason": said.reason,
            "last_scale_time": last,
        }
    )


def _variant_status(
    spec: ModelPoolSpec, decision: VariantDecision, seen: Observation
) -> VariantStatus:
    p = decision.plan
    live = seen.deployments.get(decision.name)
    base = VariantStatus(
        name=decision.name,
        gpu=decision.gpu.name,
        feasible=p.feasible,
        tensor_parallel_size=p.tensor_parallel_size,
        weights_per_gpu_bytes=p.weights_per_gpu_bytes,
        kv_cache_tokens=p.kv_cache_tokens,
        max_concurrent_sequences=p.max_concurrent_sequences,
    )
    if not p.feasible:
        return base.model_copy(update={"reason": f"Infeasible: {p.reason}"})
    intent = plan.replicas_intent(spec, decision.variant, live)
    desired = intent if intent is not None else (live.replicas if live else 0) or 0
    update: dict[str, object] = {
        "desired_replicas": desired,
        "ready_replicas": live.ready_replicas if live else 0,
    }
    pending = [x.unschedulable for x in seen.pods if x.variant == decision.name and x.unschedulable]
    if seen.missing_secret:
        update["reason"] = f"SecretMissing: {seen.missing_secret}"
    elif pending:
        update["reason"] = f"Unschedulable: {pending[0]}"
    return base.model_copy(update=update)


def _converged(v: VariantStatus, live: observe.ObservedChild | None) -> bool:
    return live is not None and live.rolled_out and v.ready_replicas >= v.desired_replicas


def _names(items: Iterable[VariantStatus]) -> str:
    return ", ".join(v.name for v in items)


def _all_blocked(reason: str, degraded: str, msg: str) -> list[tuple[str, str, str, str]]:
    return [
        ("Ready", "False", reason, msg),
        ("Progressing", "False", reason, msg),
        ("Degraded", "True", degraded, msg),
    ]


def _conditions(
    variants: Sequence[VariantStatus], seen: Observation
) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of Ready, Progressing, Degraded."""
    if seen.problems:
        return _all_blocked("InvalidSpec", "InvalidSpec", "; ".join(seen.problems))
    feasible = [v for v in variants if v.feasible]
    infeasible = [v for v in variants if not v.feasible]
    if not feasible:
        msg = "no variant fits its GPU generation: " + "; ".join(
            f"{v.name}: {v.reason}" for v in infeasible
        )
        return _all_blocked("NoFeasibleVariant", "VariantInfeasible", msg)
    if seen.missing_secret:
        msg = f"hub token unavailable: {seen.missing_secret}"
        return _all_blocked("SecretMissing", "SecretMissing", msg)
    waiting = [v for v in feasible if not _converged(v, seen.deployments.get(v.name))]
    stuck = [v for v in feasible if v.reason.startswith("Unschedulable")]
    return [_ready(feasible, waiting), _progressing(waiting, stuck), _degraded(stuck, infeasible)]


def _ready(
    feasible: list[VariantStatus], waiting: list[VariantStatus]
) -> tuple[str, str, str, str]:
    if waiting:
        detail = "; ".join(f"{v.name} {v.ready_replicas}/{v.desired_replicas}" for v in waiting)
        return ("Ready", "False", "VariantsNotReady", f"variants not ready: {detail}")
    ready = sum(v.ready_replicas for v in feasible)
    return ("Ready", "True", "AllVariantsReady",
            f"{ready} replicas ready across {len(feasible)} variants")  # fmt: skip


def _progressing(
    waiting: list[VariantStatus], stuck: list[VariantStatus]
) -> tuple[str, str, str, str]:
    moving = [v for v in waiting if v not in stuck]
    if moving:
        return ("Progressing", "True", "RollingOut", f"rolling out: {_names(moving)}")
    if stuck:
        return ("Progressing", "False", "Unschedulable", f"cannot place pods of {_names(stuck)}")
    return ("Progressing", "False", "Complete", "every variant runs its latest spec")


def _degraded(
    stuck: list[VariantStatus], infeasible: list[VariantStatus]
) -> tuple[str, str, str, str]:
    problems = [f"{v.name}: {v.reason}" for v in (*stuck, *infeasible)]
    if stuck:
        return ("Degraded", "True", "VariantUnschedulable", "; ".join(problems))
    if infeasible:
        return ("Degraded", "True", "VariantInfeasible", "; ".join(problems))
    return ("Degraded", "False", "AsExpected", "every variant is feasible and placed")


def compute(
    spec: ModelPoolSpec,
    decisions: Sequence[VariantDecision],
    seen: Observation,
    *,
    previous: ModelPoolStatus | None,
    now: datetime.datetime,
) -> ModelPoolStatus:
    """The status to write; equal to ``previous`` when nothing observable changed."""
    before = {v.name: v for v in (previous.variants if previous else ())}
    variants = [
        _scaled(_variant_status(spec, d, seen), seen, before.get(d.name)) for d in decisions
    ]
    old = {c.type: c for c in (previous.conditions if previous else ())}
    stamp = conditions.rfc3339(now)
    written = tuple(
        conditions.condition(c, old, generation=seen.generation, now=stamp)
        for c in [*_conditions(variants, seen), *_scaling(spec, seen.scaling)]
    )
    return ModelPoolStatus(
        observed_generation=seen.generation,
        conditions=written,
        variants=tuple(variants),
        variant_count=len(spec.variants),
        desired_replicas=sum(v.desired_replicas for v in variants),
        ready_replicas=sum(v.ready_replicas for v in variants),
        generations=seen.generations,
    )


def published_plan(
    written: ModelPoolStatus | None, *, generation: int
) -> tuple[VariantStatus, ...] | None:
    """The variants as the reconciler planned them for the spec of ``generation`` (TP,
    feasibility, KV capacity), as the pool's status publishes them — what the autoscaler
    reads instead of planning again. None while the status is not written yet or was
    computed for an older spec: the reconciler is queued for the newer one."""
    if written is None or written.observed_generation != generation:
        return None
    return written.variants or None


def _scaling(
    spec: ModelPoolSpec, report: scalingreport.PoolReport | None
) -> list[tuple[str, str, str, str]]:
    """``ScalingActive``: who sizes the variants that ask for a replica range; nothing
    when none asks."""
    ranged = [v.name for v in spec.variants if plan.autoscaled(spec, v)]
    if not ranged:
        return []
    names = ", ".join(ranged)
    if spec.autoscaling.mode == "external":
        message = f"autoscaling.mode external: the replicas of {names} are left to HPA/KEDA"
        return [("ScalingActive", "False", "ExternalAutoscaler", message)]
    if report is None:
        message = f"gpufleet's autoscaler has not decided on {names} yet"
        return [("ScalingActive", "False", "AutoscalerStarting", message)]
    active = "False" if report.state == "SignalsUnavailable" else "True"
    return [("ScalingActive", active, report.state, report.summary)]
