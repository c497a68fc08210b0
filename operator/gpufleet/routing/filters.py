"""Filters: which candidates may take a request at all.

Each filter keeps a subset of the candidates, in order. ``circuit`` never ejects every
endpoint: when all circuits are open it keeps them all (panic mode, as Envoy does),
since refusing everything is worse than trying an endpoint that may have recovered.
``not_interrupted`` does the same for endpoints whose node is about to go away (they
still answer until it does), and ``spot`` keeps the spot endpoints when there are any.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpufleet.api.traffic import LargeRequests
from gpufleet.routing.model import Candidate, RoutingRequest

Candidates = Sequence[Candidate]


def serves_model(request: RoutingRequest, candidates: Candidates) -> list[Candidate]:
    return [c for c in candidates if c.endpoint.model == request.model]


def healthy(candidates: Candidates) -> list[Candidate]:
    return [c for c in candidates if c.load.healthy]


def circuit(candidates: Candidates) -> list[Candidate]:
    """Closed circuits, and half-open ones with a probe slot; all when none qualifies."""
    allowed = [
        c
        for c in candidates
        if c.load.circuit == "closed" or (c.load.circuit == "half-open" and c.load.probe_available)
    ]
    return allowed or list(candidates)


def not_interrupted(candidates: Candidates) -> list[Candidate]:
    """Endpoints whose node is not marked for interruption; all when every one is."""
    staying = [c for c in candidates if not c.endpoint.interruption]
    return staying or list(candidates)


def routable(candidates: Candidates) -> list[Candidate]:
    """Those a request may be sent to at all: healthy, by ``circuit``, not interrupted."""
    return not_interrupted(circuit(healthy(candidates)))


def spot(candidates: Candidates) -> list[Candidate]:
    """The spot endpoints, or all when there is none."""
    return [c for c in candidates if c.endpoint.capacity_type == "spot"] or list(candidates)


def fits_kv(request: RoutingRequest, candidates: Candidates) -> list[Candidate]:
    """Endpoints whose whole KV cache can hold the request's context (unknown: yes)."""
    tokens = request.input_tokens + request.output_tokens
    return [
        c
        for c in candidates
        if not c.endpoint.kv_capacity_tokens or tokens <= c.endpoint.kv_capacity_tokens
    ]


def not_saturated(candidates: Candidates) -> list[Candidate]:
    return [c for c in candidates if c.load.in_flight < c.endpoint.max_in_flight]


def free_slots(model: str, candidates: Candidates) -> int:
    """How many more requests the routable endpoints of ``model`` take before each is at
    its request limit: the room a queued request that got none leaves to those behind."""
    serving = routable([c for c in candidates if c.endpoint.model == model])
    return sum(max(0, c.endpoint.max_in_flight - c.load.in_flight) for c in serving)


def large_placement(policy: LargeRequests, candidates: Candidates) -> list[Candidate]:
    """Where a large request may go: the preferred generations (or all when none is
    listed), and among them the largest TP, then the most KV headroom.

    Empty when no preferred generation is present; the caller then falls back to all
    candidates unless placement is ``require``.
    """
    preferred = set(policy.preferred_generations)
    pool = [c for c in candidates if not preferred or c.endpoint.gpu in preferred]
    if not pool:
        return []
    top_tp = max(c.endpoint.tensor_parallel_size for c in pool)
    return [c for c in pool if c.endpoint.tensor_parallel_size == top_tp]
