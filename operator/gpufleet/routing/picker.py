"""Filter -> Scorer -> Picker: the one routing decision.

``pick`` narrows the candidates (serves the model, not already tried, healthy, circuit,
not marked for interruption, fits the KV cache, large-request placement, not saturated,
the first spillover tier that is not saturated — ``gpufleet.routing.spillover`` — and
within it the spot endpoints for a class with ``preferSpot``), then chooses by strategy:

- ``round-robin``: the ``turn``-th candidate in id order;
- ``least-request``: fewest requests in flight, ties by ``turn``;
- ``cost``: by the policy's ``objective`` (``gpufleet.routing.objective``) over each
  candidate's predicted TTFT, TPOT and price per token from its learned curve
  (``Inputs.curves``; the prior where none is given): ``balanced`` = highest weighted
  score (``scorers.totals`` of ``scorers.breakdown``), ties by fewest in flight;
  ``cost`` = cheapest predicted to meet the class's SLO, else fastest; ``latency`` =
  fastest.

It returns a ``Decision`` or a ``NoCapacity`` whose ``kind`` says what the caller does:
``saturated`` -> queue and try again, ``too_large`` -> 400, ``unavailable`` -> 503,
``spilled`` (every spillover tier is saturated) -> the fallback model, else pick again
with ``Inputs.tiers`` off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.traffic import LargeRequests
from gpufleet.routing import (
    affinity,
    calibration,
    cost,
    filters,
    objective,
    performance,
    scorers,
    spillover,
)
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Considered:
    """One candidate of a cost-strategy decision, as it was judged: each weighted
    scorer's value, their weighted sum, and its prediction for the request."""

    endpoint: Endpoint
    scores: Mapping[str, float]
    total: float
    prediction: objective.Prediction


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The endpoint chosen; ``considered`` every candidate judged, when the picker was
    asked to explain (``Inputs.explain``) and the strategy is ``cost``; ``tier`` the
    spillover tier it came from (None without tiers, or when all were saturated);
    ``prediction`` the chosen endpoint's (``cost`` only), which the router compares with
    what it then observes (``gpufleet.routing.calibration``)."""

    endpoint: Endpoint
    trigger: cost.Trigger | None = None
    score: float = 0.0
    considered: tuple[Considered, ...] = ()
    tier: int | None = None
    prediction: objective.Prediction | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NoCapacity:
    kind: Literal["saturated", "too_large", "unavailable", "spilled"]
    reason: str
    trigger: cost.Trigger | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """Everything besides the request and candidates; ``turn`` rotates ties; ``curves``
    are the endpoints' learned performance curves (by id); ``explain`` asks for the
    judged candidates in the ``Decision``; ``tiers`` off ignores the spillover tiers;
    ``margins`` how far each endpoint's latency runs past its predictions (by id; the
    default margin where none is given)."""

    policy: RoutingPolicySpec
    turn: int = 0
    ring: affinity.Ring | None = None
    session_target: str | None = None
    exclude: frozenset[str] = frozenset()
    curves: Mapping[str, performance.Curve] = dataclasses.field(default_factory=dict)
    explain: bool = False
    tiers: bool = True
    margins: Mapping[str, calibration.Margin] = dataclasses.field(default_factory=dict)


def pick(
    request: RoutingRequest, candidates: Sequence[Candidate], inputs: Inputs
) -> Decision | NoCapacity:
    """Choose an endpoint for ``request``; never raises for lack of capacity."""
    pool = [c for c in filters.serves_model(request, candidates) if c.id not in inputs.exclude]
    pool = filters.routable(pool)
    if not pool:
        return NoCapacity("unavailable", f"no healthy endpoint serves model {request.model}")
    fitting = filters.fits_kv(request, pool)
    if not fitting:
        tokens = request.input_tokens + request.output_tokens
        return NoCapacity("too_large", f"{tokens} tokens exceed every endpoint's KV cache")
    large = inputs.policy.large_requests
    trigger = cost.trigger(
        cost.Estimate(request.input_tokens, request.output_tokens, request.kv_mb),
        large,
        cost.memory_percent(fitting),
    )
    placed = _placed(trigger, large, fitting)
    if not placed:
        return NoCapacity("unavailable", "no endpoint of the large-request generations", trigger)
    free = filters.not_saturated(placed)
    if not free:
        return NoCapacity("saturated", "every endpoint is at its request limit", trigger)
    return _tiered(request, placed, free, inputs, trigger)


def _tiered(
    request: RoutingRequest,
    placed: list[Candidate],
    free: list[Candidate],
    inputs: Inputs,
    trigger: cost.Trigger | None,
) -> Decision | NoCapacity:
    """Choose among the first unsaturated spillover tier's endpoints with room (judged
    over all ``placed``; every one in ``free`` without tiers)."""
    tiers = inputs.policy.spillover
    if not tiers.tiers or not inputs.tiers:
        return _choose(request, _capacity(request, free, inputs), inputs, trigger)
    selection = spillover.select(tiers, placed, free)
    if selection is None:
        return NoCapacity("spilled", spillover.describe(tiers, placed), trigger)
    chosen = _choose(request, _capacity(request, selection.candidates, inputs), inputs, trigger)
    return dataclasses.replace(chosen, tier=selection.tier)


def _capacity(
    request: RoutingRequest, candidates: list[Candidate], inputs: Inputs
) -> list[Candidate]:
    """A class that prefers spot capacity takes the spot endpoints when any has room."""
    klass = inputs.policy.request_class(request.klass)
    return filters.spot(candidates) if klass is not None and klass.prefer_spot else candidates


def _placed(
    trigger: cost.Trigger | None, large: LargeRequests, candidates: list[Candidate]
) -> list[Candidate]:
    """Large requests go to the large placement; with ``prefer``, anywhere when it is
    absent or saturated."""
    if trigger is None:
        return candidates
    placed = filters.large_placement(large, candidates)
    if large.placement == "require":
        return placed
    return placed if filters.not_saturated(placed) else candidates


def _choose(
    request: RoutingRequest,
    candidates: list[Candidate],
    inputs: Inputs,
    trigger: cost.Trigger | None,
) -> Decision:
    ordered = sorted(candidates, key=lambda c: c.id)
    strategy = inputs.policy.strategy
    if strategy == "round-robin":
        return Decision(ordered[inputs.turn % len(ordered)].endpoint, trigger)
    if strategy == "least-request":
        fewest = min(c.load.in_flight for c in ordered)
        tied = [c for c in ordered if c.load.in_flight == fewest]
        return Decision(tied[inputs.turn % len(tied)].endpoint, trigger)
    predictions = _predictions(request, ordered, inputs)
    ctx = _context(request, ordered, inputs, predictions)
    weights = inputs.policy.scorer_weights.model_dump()
    breakdown = scorers.breakdown(request, ordered, ctx, weights)
    totals = scorers.totals(breakdown, weights, len(ordered))
    goal = inputs.policy.objective
    if goal == "balanced":
        best = max(
            range(len(ordered)),
            key=lambda i: (round(totals[i], 9), -ordered[i].load.in_flight, -i),
        )
    else:
        full = _fill(request, ordered, inputs, predictions)
        rounded = [round(t, 9) for t in totals]
        best = objective.choose(goal, request, predictions, rounded, fill=full)
    considered: tuple[Considered, ...] = ()
    if inputs.explain:
        considered = tuple(
            Considered(c.endpoint, {k: v[i] for k, v in breakdown.items()}, totals[i], p)
            for i, (c, p) in enumerate(zip(ordered, predictions, strict=True))
        )
    return Decision(
        ordered[best].endpoint, trigger, totals[best], considered, prediction=predictions[best]
    )


def _predictions(
    request: RoutingRequest, candidates: list[Candidate], inputs: Inputs
) -> list[objective.Prediction]:
    klass = inputs.policy.request_class(request.klass)
    slo = klass.slo if klass else None
    curves = objective.curves_for(candidates, inputs.curves)
    return [
        objective.predict(request, c, k, slo, inputs.margins.get(c.id, calibration.DEFAULT))
        for c, k in zip(candidates, curves, strict=True)
    ]


def _fill(
    request: RoutingRequest,
    candidates: list[Candidate],
    inputs: Inputs,
    predictions: Sequence[objective.Prediction],
) -> float:
    """How full the candidates are for ``request``'s class (``objective.fill``): each one's
    prediction now against its prediction idle."""
    klass = inputs.policy.request_class(request.klass)
    slo = klass.slo if klass else None
    if slo is None:
        return 0.0
    curves = objective.curves_for(candidates, inputs.curves)
    pressures = []
    for c, k, now in zip(candidates, curves, predictions, strict=True):
        margin = inputs.margins.get(c.id, calibration.DEFAULT)
        idle = objective.predict(request, Candidate(c.endpoint, Load()), k, slo, margin)
        pressures.append(objective.pressure(now, idle, slo, margin, request.output_tokens))
    return objective.fill(pressures)


def _context(
    request: RoutingRequest,
    candidates: list[Candidate],
    inputs: Inputs,
    predictions: Sequence[objective.Prediction],
) -> scorers.Context:
    policy = inputs.policy
    classes = {c.name: c for c in policy.request_classes}
    klass = classes.get(request.klass)
    return scorers.Context(
        prefix_target=_prefix_target(request, candidates, inputs),
        session_target=inputs.session_target,
        preferred_generations=tuple(klass.preferred_generations) if klass else (),
        price_scores=tuple(objective.price_scores(predictions)),
    )


def _prefix_target(
    request: RoutingRequest, candidates: list[Candidate], inputs: Inputs
) -> str | None:
    prefix = inputs.policy.affinity.prefix
    if request.prefix_key is None or inputs.ring is None or not prefix.enabled:
        return None
    loads = {c.id: c.load.pending_tokens / max(c.endpoint.throughput, 1e-9) for c in candidates}
    mean_throughput = sum(c.endpoint.throughput for c in candidates) / len(candidates)
    added = cost.request_cost(request.input_tokens, request.output_tokens) / mean_throughput
    return affinity.bounded_target(
        inputs.ring, request.prefix_key, loads, ratio=prefix.max_load_ratio, added=added
    )
