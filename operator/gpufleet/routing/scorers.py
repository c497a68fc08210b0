"""Scorers: each maps the candidates of one request to values in [0, 1], higher is
better; the cost strategy sums them with the RoutingPolicy's ``scorerWeights``.

- ``load``: expected completion cost = (pending tokens + this request's cost) /
  throughput; the cheapest endpoint scores 1, others min cost / their cost;
- ``kv_cache``: KV-cache headroom (Prometheus, else the router's pending tokens over
  the endpoint's KV capacity);
- ``queue``: 1 / (1 + requests waiting) from Prometheus; neutral 1 without it;
- ``prefix_affinity`` / ``session_affinity``: the affine endpoint's ``load`` score,
  else 0 — a cache hit is worth having only where the expected cost is near the
  cheapest, so a slow or busy affine endpoint earns little of the bonus;
- ``class_preference``: the class's preferred generations, first = 1, falling
  linearly; neutral (1 everywhere) for a class without preferences — speed is already
  in ``load``, which divides by throughput, and a second "fastest first" bonus piled
  interactive traffic onto the fastest generation (bench/router_quality.py measured
  cost at 0.71x round-robin's goodput with it);
- ``cost``: the cheapest price per token among the candidates over this one's
  (``objective.price_scores``: price per GPU-hour x TP x predicted TPOT / the batch the
  request would join; GPU-seconds per token when no endpoint has a price); neutral 1
  when the picker gave no prices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from gpufleet.routing import cost
from gpufleet.routing.model import Candidate, RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """Per-request facts the scorers need beyond the candidates."""

    prefix_target: str | None = None
    session_target: str | None = None
    preferred_generations: tuple[str, ...] = ()
    price_scores: tuple[float, ...] = ()


Scorer = Callable[[RoutingRequest, Sequence[Candidate], Context], list[float]]


def expected_cost(request: RoutingRequest, candidate: Candidate) -> float:
    """Seconds-like cost of finishing this request there: work ahead / throughput."""
    work = candidate.load.pending_tokens + cost.request_cost(
        request.input_tokens, request.output_tokens
    )
    return work / max(candidate.endpoint.throughput, 1e-9)


def load(request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context) -> list[float]:
    costs = [expected_cost(request, c) for c in candidates]
    best = min(costs, default=0.0)
    return [best / c if c > 0 else 1.0 for c in costs]


def _kv_headroom(request: RoutingRequest, candidate: Candidate) -> float:
    signals = candidate.load.signals
    if signals is not None and signals.kv_usage is not None:
        return 1.0 - signals.kv_usage
    capacity = candidate.endpoint.kv_capacity_tokens
    if not capacity:
        return 1.0
    # Without metrics, input + output tokens in flight approximate the KV in use.
    used = candidate.load.pending_tokens + request.input_tokens + request.output_tokens
    return 1.0 - used / capacity


def kv_cache(request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context) -> list[float]:
    return [_clamp(_kv_headroom(request, c)) for c in candidates]


def queue(request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context) -> list[float]:
    out = []
    for c in candidates:
        waiting = c.load.signals.waiting if c.load.signals else None
        out.append(1.0 if waiting is None else 1.0 / (1.0 + max(0.0, waiting)))
    return out


def prefix_affinity(
    request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context
) -> list[float]:
    return _affine(request, candidates, ctx.prefix_target)


def session_affinity(
    request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context
) -> list[float]:
    return _affine(request, candidates, ctx.session_target)


def _affine(
    request: RoutingRequest, candidates: Sequence[Candidate], target: str | None
) -> list[float]:
    """The affine endpoint's ``load`` score (cheapest expected cost / its own), 0 elsewhere.

    A cache hit saves part of one request's prefill, never more than the whole request,
    so the bonus is bounded by how close the affine endpoint is to the cheapest: a flat
    1 let affinity outweigh any difference in speed and queue, and with a few shared
    system prompts it pinned most traffic to their ring targets whatever their
    generation (bench/router_quality.py: cost 0.94x least-request's goodput).
    """
    if target is None:
        return [0.0 for _ in candidates]
    scores = load(request, candidates, Context())
    return [s if c.id == target else 0.0 for c, s in zip(candidates, scores, strict=True)]


def class_preference(
    request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context
) -> list[float]:
    order = ctx.preferred_generations
    if order:
        return [1.0 - order.index(g) / len(order) if g in order else 0.0 for g in _gpus(candidates)]
    return [1.0 for _ in candidates]


def price(request: RoutingRequest, candidates: Sequence[Candidate], ctx: Context) -> list[float]:
    if len(ctx.price_scores) == len(candidates):
        return list(ctx.price_scores)
    return [1.0 for _ in candidates]


def _gpus(candidates: Sequence[Candidate]) -> list[str]:
    return [c.endpoint.gpu for c in candidates]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


# Built by name from the RoutingPolicy's scorerWeights fields (snake_case).
SCORERS: dict[str, Scorer] = {
    "load": load,
    "kv_cache": kv_cache,
    "queue": queue,
    "prefix_affinity": prefix_affinity,
    "session_affinity": session_affinity,
    "class_preference": class_preference,
    "cost": price,
}


def breakdown(
    request: RoutingRequest,
    candidates: Sequence[Candidate],
    ctx: Context,
    weights: dict[str, float],
) -> dict[str, list[float]]:
    """Each weighted scorer's clamped values per candidate (zero-weight scorers skipped)."""
    return {
        name: [_clamp(v) for v in SCORERS[name](request, candidates, ctx)]
        for name, weight in weights.items()
        if weight > 0
    }


def totals(scores: dict[str, list[float]], weights: dict[str, float], n: int) -> list[float]:
    """Σ weight x score per candidate over ``breakdown``'s scores."""
    sums = [0.0] * n
    for name, values in scores.items():
        for i, value in enumerate(values):
            sums[i] += weights[name] * value
    return sums
