"""One autoscaling decision per ModelPool: desired replicas per variant, with reasons.

1. A variant whose TP cannot fit one node of its generation, or whose generation has no
   schedulable node, is infeasible: 0 replicas, reported with that reason.
2. A variant with ready replicas but no fresh signals stops the decision: every variant
   holds its replicas (within min/max) until Prometheus answers again.
3. The load (``capacity.need``) is compared with the capacity ready or on the way. Above
   it by more than ``TOLERANCE``, replicas are added one at a time to the best variant
   for ``scaleUpPreference`` that is below ``maxReplicas`` and has a node with enough
   free GPUs (never a Pending pod); with nothing serving or starting, held requests
   start the cheapest feasible variant. Otherwise replicas are removed worst first
   (the reverse ranking: worst price per token for ``cost``) while the rest absorb the
   load at the targets with the same tolerance; ``minReplicas`` stay, and a pool keeps
   one replica until it has been idle ``scaleToZeroAfterSeconds``.
4. The behaviour (``behaviour``) then holds changes to the stabilisation windows and
   rate limits; starting from zero skips the scale-up window (the requests are waiting).
   An idle pool past ``scaleToZeroAfterSeconds`` goes to each variant's
   ``minReplicas`` at once: the idle time is its window.
"""

from __future__ import annotations

import dataclasses

from gpufleet.scaling import behaviour, capacity, economics, inventory, model

TOLERANCE = 0.1


@dataclasses.dataclass(slots=True)
class _Plan:
    """The working state of one decision."""

    pool: model.Pool
    history: model.History
    now: float
    feasible: list[model.Variant]
    current: dict[str, int]
    speed: dict[str, float]
    ranking: list[model.Variant]
    need: float = 0.0
    have: float = 0.0
    blocked: str = ""


def _why_infeasible(variant: model.Variant, nodes: inventory.Inventory | None) -> str:
    if nodes is None:
        return ""
    generation = nodes.get(variant.gpu)
    if generation is None:
        return f"no schedulable {variant.gpu} node"
    return generation.fits(variant.tensor_parallel_size)


def _clamp(variant: model.Variant) -> int:
    return min(max(variant.replicas, variant.min_replicas), variant.max_replicas)


def decide(pool: model.Pool, history: model.History, *, now: float) -> model.Decision:
    """Desired replicas per variant of ``pool`` at time ``now``, and the history to keep."""
    infeasible = {v.name: why for v in pool.variants if (why := _why_infeasible(v, pool.inventory))}
    blind = [v.name for v in pool.variants if v.ready > 0 and v.signals is None]
    if blind:
        return _hold(pool, history, infeasible, f"no fresh signals for {', '.join(blind)}")
    history = (
        history if history.active_at is not None else dataclasses.replace(history, active_at=now)
    )
    feasible = [v for v in pool.variants if v.name not in infeasible]
    speed = economics.speeds(feasible, pool.policy.target_kv_usage)
    plan = _Plan(
        pool=pool,
        history=history,
        now=now,
        feasible=feasible,
        current={v.name: _clamp(v) for v in feasible},
        speed=speed,
        ranking=economics.order(feasible, speed, pool.policy.preference),
    )
    return _decide(plan, infeasible)


def _hold(
    pool: model.Pool, history: model.History, infeasible: dict[str, str], why: str
) -> model.Decision:
    variants = tuple(
        model.VariantDecision(v.name, 0, f"infeasible: {infeasible[v.name]}", feasible=False)
        if v.name in infeasible
        else model.VariantDecision(v.name, _clamp(v), f"holding {_clamp(v)}: {why}")
        for v in pool.variants
    )
    return model.Decision(variants=variants, summary=f"holding: {why}", history=history)


def _present_capacity(plan: _Plan) -> float:
    policy = plan.pool.policy
    return sum(
        capacity.present(v, plan.history, now=plan.now, cold_start_s=policy.cold_start_s)
        * plan.speed[v.name]
        for v in plan.feasible
    )


def _grow(plan: _Plan, raw: dict[str, int], order: list[model.Variant], floor: int) -> None:
    free = (
        {gpu: list(g.free_per_node) for gpu, g in plan.pool.inventory.items()}
        if plan.pool.inventory is not None
        else None
    )
    while plan.need > plan.have * (1 + TOLERANCE) or sum(raw.values()) < floor:
        pick = next((v for v in order if _room(v, raw, free)), None)
        if pick is None:
            plan.blocked = "no variant below maxReplicas with free GPUs on one node"
            return
        raw[pick.name] += 1
        plan.have += plan.speed[pick.name]


def _room(variant: model.Variant, raw: dict[str, int], free: dict[str, list[int]] | None) -> bool:
    if raw[variant.name] >= variant.max_replicas:
        return False
    return free is None or inventory.take(free.get(variant.gpu, []), variant.tensor_parallel_size)


def _shrink(plan: _Plan, raw: dict[str, int], floor: int) -> None:
    for variant in reversed(plan.ranking):
        while (
            raw[variant.name] > variant.min_replicas
            and sum(raw.values()) - 1 >= floor
            and plan.have - plan.speed[variant.name] >= plan.need * (1 + TOLERANCE)
        ):
            raw[variant.name] -= 1
            plan.have -= plan.speed[variant.name]


def _decide(plan: _Plan, infeasible: dict[str, str]) -> model.Decision:
    pool, policy, now = plan.pool, plan.pool.policy, plan.now
    active = capacity.busy(pool)
    active_at = now if active else plan.history.active_at
    assert active_at is not None
    idle_s = now - active_at
    plan.have = _present_capacity(plan)
    from_zero = plan.have == 0 and pool.demand.total > 0
    cheapest = economics.order(plan.feasible, plan.speed, "cost")
    started = (cheapest if from_zero else plan.ranking)[:1]
    plan.need = capacity.need(
        pool, plan.speed, started_speed=plan.speed[started[0].name] if started else 0.0
    )
    if not active and idle_s >= policy.scale_to_zero_after_s:
        final = {v.name: v.min_replicas for v in plan.feasible}
        raw = final
        why = f"idle {idle_s:.0f} s >= scaleToZeroAfterSeconds {policy.scale_to_zero_after_s:.0f}"
        events = _events(plan, final)
    else:
        raw = dict(plan.current)
        floor = 1 if sum(plan.current.values()) > 0 else 0
        before = plan.have
        _grow(plan, raw, cheapest if from_zero else plan.ranking, floor)
        if raw == plan.current:
            _shrink(plan, raw, floor)
        final, why = _behave(plan, raw, from_zero=from_zero)
        why = f"load {plan.need:.0f} tok/s vs {before:.0f} ready or starting; " + why
        events = _events(plan, final)
    keep_s = max(policy.up_window_s, policy.down_window_s, policy.up_period_s,
                 policy.down_period_s, policy.cold_start_s)  # fmt: skip
    history = behaviour.remember(
        dataclasses.replace(plan.history, active_at=active_at),
        now=now, raw=raw, events=events, active=active, keep_s=keep_s,
    )  # fmt: skip
    return model.Decision(
        variants=_verdicts(plan, raw, final, infeasible, why), summary=why, history=history
    )


def _behave(plan: _Plan, raw: dict[str, int], *, from_zero: bool) -> tuple[dict[str, int], str]:
    policy, now, history = plan.pool.policy, plan.now, plan.history
    stable = behaviour.stabilise(raw, plan.current, history, now=now, policy=policy)
    if from_zero:
        stable = {n: max(stable[n], raw[n]) for n in raw}
    up = behaviour.budget(
        history, now=now, pods=policy.up_pods, period_s=policy.up_period_s, up=True
    )
    down = behaviour.budget(
        history, now=now, pods=policy.down_pods, period_s=policy.down_period_s, up=False
    )
    ranking = [v.name for v in plan.ranking]
    final = behaviour.limit(stable, plan.current, ranking, up_budget=up, down_budget=down)
    notes = [plan.blocked] if plan.blocked else []
    if stable != raw:
        notes.append("held by the stabilisation window")
    if final != stable:
        notes.append("held by the rate limit")
    if from_zero:
        notes.append(f"{plan.pool.demand.total} requests waiting with nothing serving")
    return final, "; ".join(notes) or "on target"


def _events(plan: _Plan, final: dict[str, int]) -> list[model.ScaleEvent]:
    return [
        model.ScaleEvent(at=plan.now, variant=name, delta=final[name] - plan.current[name])
        for name in final
        if final[name] != plan.current[name]
    ]


def _verdicts(
    plan: _Plan,
    raw: dict[str, int],
    final: dict[str, int],
    infeasible: dict[str, str],
    why: str,
) -> tuple[model.VariantDecision, ...]:
    priced = any(v.cost_per_gpu_hour is not None for v in plan.feasible)
    out: list[model.VariantDecision] = []
    for v in plan.pool.variants:
        if v.name in infeasible:
            why = f"infeasible: {infeasible[v.name]}"
            out.append(model.VariantDecision(v.name, 0, why, feasible=False))
            continue
        cur, want, got = plan.current[v.name], raw[v.name], final[v.name]
        figures = economics.describe(v, plan.speed[v.name], priced=priced)
        out.append(
            model.VariantDecision(v.name, got, f"{_reason(cur, want, got)} ({figures}): {why}")
        )
    return tuple(out)


def _reason(current: int, wanted: int, final: int) -> str:
    if final > current:
        return f"up {current} -> {final}" + (f" of {wanted} wanted" if wanted > final else "")
    if final < current:
        return f"down {current} -> {final}" + (f" of {wanted} wanted" if wanted < final else "")
    if wanted != current:
        return f"holding {current}, {wanted} wanted"
    return f"steady at {current}"
