"""The ``/stats`` document: request totals, trigger and generation shares, per-endpoint
balance, signal freshness, and what the operator reads back into the RoutingPolicy's
status — ``config`` (the policy generation applied, the error of a change that could
not be, when), ``backends`` (endpoints discovered and routable per pool and GPU) and
``effectiveWeights`` (throughput weight per GPU generation in use, per GPU) — and what
the autoscaler reads: ``demand``, requests waiting per pool, ``held`` for a pool with no
ready endpoint (scale from zero) and ``queued`` behind saturated endpoints.

Counts live in ``Stats`` (updated on the request path, O(1)); ``document`` renders them
with a snapshot of the registry.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from collections.abc import Mapping

from gpufleet.router.liveconfig import ConfigState
from gpufleet.router.registry import Registry
from gpufleet.routing import cost
from gpufleet.routing.admission import Demand


@dataclasses.dataclass(slots=True)
class Stats:
    total: int = 0
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    triggers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    generations: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    classes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    retries: int = 0


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
        "endpoints": _endpoints(registry),
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
    }


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


def _endpoints(registry: Registry) -> list[dict[str, object]]:
    total = sum(s.requests for s in registry.slots.values()) or 1
    rows: list[dict[str, object]] = []
    for candidate in registry.candidates():
        slot = registry.slots[candidate.id]
        signals = candidate.load.signals
        rows.append(
            {
                "id": candidate.id,
                "model": candidate.endpoint.model,
                "gpu": candidate.endpoint.gpu,
                "pool": candidate.endpoint.pool,
                "cost_per_gpu_hour": candidate.endpoint.cost_per_gpu_hour,
                "tensor_parallel_size": candidate.endpoint.tensor_parallel_size,
                "throughput_weight": round(candidate.endpoint.throughput, 4),
                "healthy": candidate.load.healthy,
                "circuit": candidate.load.circuit,
                "in_flight": candidate.load.in_flight,
                "pending_tokens": round(candidate.load.pending_tokens, 1),
                "requests": slot.requests,
                "percentage": _share(slot.requests, total),
                "signals": dataclasses.asdict(signals) if signals else None,
            }
        )
    rows.extend(
        {"id": k, "draining": True, "in_flight": s.in_flight} for k, s in registry.draining.items()
    )
    return rows


def _balance(registry: Registry) -> dict[str, object]:
    """Pending tokens per unit of throughput: equal when the cost is balanced."""
    loads = [s.pending_tokens / s.endpoint.throughput for s in registry.slots.values()]
    mean = sum(loads) / len(loads) if loads else 0.0
    ratio = max(loads) / mean if mean > 0 else 1.0
    return {"max_over_mean_normalized_load": round(ratio, 3), "balanced": ratio <= 1.5}
