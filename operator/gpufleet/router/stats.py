"""The ``/stats`` document: request totals, trigger and generation shares, per-endpoint
balance, signal freshness, and what the operator reads back into the RoutingPolicy's
status — ``config`` (the policy generation applied, the error of a change that could
not be, when), ``backends`` (endpoints discovered and routable per pool and GPU) and
``effectiveWeights`` (throughput weight per GPU generation in use, per GPU) — and what
the autoscaler reads: ``demand``, requests waiting per pool, ``held`` for a pool with no
ready endpoint (scale from zero) and ``queued`` behind saturated endpoints. ``cost``
gives per GPU generation the tokens, GPU-seconds and dollars of the requests it served
and their dollars per million completion tokens; ``slo`` per class and generation the
requests that met and missed the class's SLO; ``served`` per class and generation the
requests answered and their completion tokens; ``spillover`` the requests each spillover
tier served (``overflow`` when all were saturated and no fallback took them), the
requests the fallback model served, and per model each tier's utilisation now, whether
it is saturated and which tier serves (None: all saturated).

Counts live in ``Stats`` (updated on the request path, O(1)); ``document`` renders them
with a snapshot of the registry.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from collections.abc import Mapping

from gpufleet.api.spillover import Spillover
from gpufleet.router.liveconfig import ConfigState
from gpufleet.router.registry import Registry
from gpufleet.router.usage import Usage
from gpufleet.routing import accounting, calibration, cost, filters, spillover
from gpufleet.routing.model import Candidate
from gpufleet.routing.waitqueue import Demand


@dataclasses.dataclass(slots=True)
class Spending:
    """What one GPU generation's served requests used and cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0
    dollars: float = 0.0


@dataclasses.dataclass(slots=True)
class Stats:
    total: int = 0
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    triggers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    generations: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    classes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    retries: int = 0
    spending: dict[str, Spending] = dataclasses.field(default_factory=dict)  # by GPU
    # (class, GPU) -> [met, missed] of requests whose class has an SLO.
    slo: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)
    # Spillover tier index (or "overflow") -> requests it served; fallback-model requests.
    tiers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    fallbacks: int = 0
    # (class, GPU) -> [requests, completion tokens] served with an answer and its usage.
    served: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)

    def routed(self, tier: int | None, *, tiered: bool, fallback: bool) -> None:
        """Count which spillover tier served a request and whether the fallback did."""
        self.fallbacks += fallback
        if tiered:
            self.tiers["overflow" if tier is None else str(tier)] += 1

    def spent(self, klass: str, gpu: str, used: Usage, spend: accounting.Spend) -> None:
        """Count one served request's tokens, GPU time, dollars and SLO verdict."""
        row = self.spending.setdefault(gpu, Spending())
        row.prompt_tokens += used.prompt_tokens
        row.completion_tokens += used.completion_tokens
        row.gpu_seconds += spend.gpu_seconds
        row.dollars += spend.dollars or 0.0
        counts = self.served.setdefault((klass, gpu), [0, 0])
        counts[0] += 1
        counts[1] += used.completion_tokens
        if spend.slo_met is not None:
            self.slo.setdefault((klass, gpu), [0, 0])[not spend.slo_met] += 1


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def document(
    stats: Stats,
    registry: Registry,
    *,
    strategy: str,
    signal_age_s: float | None,
    signal_error: str,
    queue_waiting: int,
    config_state: ConfigState,
    demand: Mapping[str, Demand] | None = None,
    tiers: Spillover | None = None,
    spread: tuple[calibration.Spread, float] | None = None,
    tightening: Mapping[str, float] | None = None,
) -> dict[str, object]:
    routed = sum(stats.generations.values())
    large = sum(stats.triggers.values())
    return {
        "strategy": strategy,
        "total_requests": stats.total,
        "outcomes": dict(stats.outcomes),
        "classes": dict(stats.classes),
        "retries": stats.retries,
        "routing": {
            "routed_requests": routed,
            "large_requests": large,
            "large_percentage": _share(large, routed),
            "triggers": {t: stats.triggers.get(t, 0) for t in cost.TRIGGERS},
            "trigger_percentages": {
                t: _share(stats.triggers.get(t, 0), routed) for t in cost.TRIGGERS
            },
        },
        "generations": {
            g: {"requests": n, "percentage": _share(n, routed)}
            for g, n in sorted(stats.generations.items())
        },
        "endpoints": _endpoints(registry, spread),
        "balance": _balance(registry),
        "signals": {
            "source": "prometheus" if registry.fresh_signals() else "local",
            "fresh_endpoints": registry.fresh_signals(),
            "age_seconds": None if signal_age_s is None else round(signal_age_s, 3),
            "last_error": signal_error,
        },
        "queue": {"waiting": queue_waiting},
        "config": {
            "policyGeneration": config_state.generation,
            "error": config_state.error,
            "appliedAt": config_state.applied_at,
        },
        "backends": backends(registry),
        "effectiveWeights": effective_weights(registry),
        "demand": _demand(demand or {}),
        "cost": _cost(stats),
        "slo": _slo(stats),
        "served": _served(stats),
        "slo_tightening": {k: round(f, 3) for k, f in sorted((tightening or {}).items())},
        "spillover": _spillover(stats, registry, tiers or Spillover()),
    }


def _spillover(stats: Stats, registry: Registry, tiers: Spillover) -> dict[str, object]:
    by_model: dict[str, list[Candidate]] = collections.defaultdict(list)
    for candidate in registry.candidates():
        by_model[candidate.endpoint.model].append(candidate)
    models = (
        {m: _tier_rows(tiers, filters.routable(c)) for m, c in sorted(by_model.items())}
        if tiers.tiers
        else {}
    )
    return {"requests": dict(sorted(stats.tiers.items())), "fallbacks": stats.fallbacks,
            "models": models}  # fmt: skip


def _tier_rows(tiers: Spillover, candidates: list[Candidate]) -> dict[str, object]:
    loads = spillover.loads(tiers, candidates)
    serving = next((t.index for t in loads if not t.saturated), None)
    return {"serving": serving, "tiers": [_tier_row(t) for t in loads]}


def _tier_row(load: spillover.TierLoad) -> dict[str, object]:
    return {
        "generations": list(load.generations),
        "saturationPercent": round(load.threshold * 100),
        "endpoints": load.endpoints,
        "utilisationPercent": round(load.utilisation * 100, 1),
        "saturated": load.saturated,
    }


def _cost(stats: Stats) -> dict[str, dict[str, float | None]]:
    """Per generation: tokens, GPU-seconds, dollars and dollars per million completion
    tokens of the requests it served (None before any completion token, or unpriced)."""
    out: dict[str, dict[str, float | None]] = {}
    for gpu, row in sorted(stats.spending.items()):
        completion, dollars = row.completion_tokens, row.dollars
        per_million = dollars / completion * 1e6 if completion and dollars else None
        out[gpu] = {
            "prompt_tokens": row.prompt_tokens, "completion_tokens": completion,
            "gpu_seconds": round(row.gpu_seconds, 3), "dollars": round(dollars, 6),
            "dollars_per_million_tokens": None if per_million is None else round(per_million, 4),
        }  # fmt: skip
    return out


def _slo(stats: Stats) -> dict[str, dict[str, dict[str, float]]]:
    """Class -> generation -> requests that met and missed the class's SLO, and the
    percentage met."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (klass, gpu), (met, missed) in sorted(stats.slo.items()):
        row = {"met": met, "missed": missed, "attainment": _share(met, met + missed)}
        out.setdefault(klass, {})[gpu] = row
    return out


def _served(stats: Stats) -> dict[str, dict[str, dict[str, int]]]:
    """Class -> generation -> requests answered and their completion tokens."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (klass, gpu), (requests, tokens) in sorted(stats.served.items()):
        out.setdefault(klass, {})[gpu] = {"requests": requests, "completion_tokens": tokens}
    return out


def _demand(demand: Mapping[str, Demand]) -> dict[str, dict[str, int]]:
    return {pool: {"queued": d.queued, "held": d.held} for pool, d in sorted(demand.items())}


def backends(registry: Registry) -> list[dict[str, object]]:
    """Per (pool, GPU): endpoints discovered, and those routable now (healthy, circuit
    not open)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for candidate in registry.candidates():
        row = counts.setdefault((candidate.endpoint.pool, candidate.endpoint.gpu), [0, 0])
        row[0] += 1
        row[1] += candidate.load.healthy and candidate.load.circuit != "open"
    return [
        {"pool": pool, "gpu": gpu, "endpoints": n, "readyEndpoints": ready}
        for (pool, gpu), (n, ready) in sorted(counts.items())
    ]


def effective_weights(registry: Registry) -> dict[str, float]:
    """GPU generation -> the throughput weight routing uses, per GPU (mean over its
    endpoints of throughput / TP: catalog, override or learned)."""
    per: dict[str, list[float]] = collections.defaultdict(list)
    for slot in registry.slots.values():
        endpoint = slot.endpoint
        per[endpoint.gpu].append(endpoint.throughput / endpoint.tensor_parallel_size)
    return {gpu: round(statistics.fmean(values), 4) for gpu, values in sorted(per.items())}


def _endpoints(
    registry: Registry, spread: tuple[calibration.Spread, float] | None
) -> list[dict[str, object]]:
    total = sum(s.requests for s in registry.slots.values()) or 1
    rows: list[dict[str, object]] = []
    for candidate in registry.candidates():
        slot = registry.slots[candidate.id]
        signals = candidate.load.signals
        margin = _margin(candidate.id, spread)
        rows.append(
            {
                "id": candidate.id,
                "model": candidate.endpoint.model,
                "gpu": candidate.endpoint.gpu,
                "pool": candidate.endpoint.pool,
                "cost_per_gpu_hour": candidate.endpoint.cost_per_gpu_hour,
                "capacity_type": candidate.endpoint.capacity_type,
                "interruption": candidate.endpoint.interruption,
                "tensor_parallel_size": candidate.endpoint.tensor_parallel_size,
                "throughput_weight": round(candidate.endpoint.throughput, 4),
                "healthy": candidate.load.healthy,
                "circuit": candidate.load.circuit,
                "in_flight": candidate.load.in_flight,
                "pending_tokens": round(candidate.load.pending_tokens, 1),
                "prefill_tokens": round(candidate.load.prefill_tokens, 1),
                "kv_tokens": round(candidate.load.kv_tokens, 1),
                "prefill_tokens_per_s": round(candidate.load.prefill_per_s, 1),
                "requests": slot.requests,
                "percentage": _share(slot.requests, total),
                "signals": dataclasses.asdict(signals) if signals else None,
                "slo_margin": margin,
            }
        )
    rows.extend(
        {"id": k, "draining": True, "in_flight": s.in_flight} for k, s in registry.draining.items()
    )
    return rows


def _margin(
    endpoint: str, spread: tuple[calibration.Spread, float] | None
) -> dict[str, float | None]:
    """How far the endpoint's streams ran past their predictions lately (the 90th
    percentile of observed / predicted TTFT and TPOT); None until learned."""
    learned, now = spread or (calibration.Spread(), 0.0)
    factors = {m: learned.factor(endpoint, m, now) for m in ("ttft", "tpot")}
    return {m: None if f is None else round(f, 3) for m, f in factors.items()}


def _balance(registry: Registry) -> dict[str, object]:
    """Pending tokens per unit of throughput: equal when the cost is balanced."""
    loads = [s.pending_tokens / s.endpoint.throughput for s in registry.slots.values()]
    mean = sum(loads) / len(loads) if loads else 0.0
    ratio = max(loads) / mean if mean > 0 else 1.0
    return {"max_over_mean_normalized_load": round(ratio, 3), "balanced": ratio <= 1.5}
