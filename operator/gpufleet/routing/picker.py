"""Filter -> Scorer -> Picker: the one routing decision.

``pick`` narrows the candidates (serves the model, not already tried, healthy, circuit,
fits the KV cache, large-request placement, not saturated), then chooses by strategy:

- ``round-robin``: the ``turn``-th candidate in id order;
- ``least-request``: fewest requests in flight, ties by ``turn``;
- ``cost``: highest weighted score (``scorers.weighted``), ties by fewest in flight.

It returns a ``Decision`` or a ``NoCapacity`` whose ``kind`` says what the caller does:
``saturated`` -> queue and try again, ``too_large`` -> 400, ``unavailable`` -> 503.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.traffic import LargeRequests
from gpufleet.routing import affinity, cost, filters, scorers
from gpufleet.routing.model import Candidate, Endpoint, RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    endpoint: Endpoint
    trigger: cost.Trigger | None = None
    score: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class NoCapacity:
    kind: Literal["saturated", "too_large", "unavailable"]
    reason: str
    trigger: cost.Trigger | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """Everything besides the request and candidates; ``turn`` rotates ties."""

    policy: RoutingPolicySpec
    turn: int = 0
    ring: affinity.Ring | None = None
    session_target: str | None = None
    exclude: frozenset[str] = frozenset()


def pick(
    request: RoutingRequest, candidates: Sequence[Candidate], inputs: Inputs
) -> Decision | NoCapacity:
    """Choose an endpoint for ``request``; never raises for lack of capacity."""
    pool = [c for c in filters.serves_model(request, candidates) if c.id not in inputs.exclude]
    pool = filters.circuit(filters.healthy(pool))
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
    return _choose(request, free, inputs, trigger)


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
    ctx = _context(request, ordered, inputs)
    weights = inputs.policy.scorer_weights.model_dump()
    totals = scorers.weighted(request, ordered, ctx, weights)
    best = max(
        range(len(ordered)),
        key=lambda i: (round(totals[i], 9), -ordered[i].load.in_flight, -i),
    )
    return Decision(ordered[best].endpoint, trigger, totals[best])


def _context(
    request: RoutingRequest, candidates: list[Candidate], inputs: Inputs
) -> scorers.Context:
    policy = inputs.policy
    classes = {c.name: c for c in policy.request_classes}
    klass = classes.get(request.klass)
    return scorers.Context(
        prefix_target=_prefix_target(request, candidates, inputs),
        session_target=inputs.session_target,
        preferred_generations=tuple(klass.preferred_generations) if klass else (),
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
