"""Spillover tiers as a filter: the candidates of the first tier that is not saturated.
Pure.

An endpoint's utilisation is the larger of the two resources a vLLM engine runs out of:
sequence slots (requests in flight / the router's per-endpoint request limit) and KV
cache (vLLM's ``kv_cache_usage`` when Prometheus has a fresh figure, else the KV the
router's own requests in flight will hold at their longest — prompt + expected output —
over the endpoint's planned KV capacity). A tier's utilisation is the mean over its routable
endpoints, and the tier is saturated when that reaches its ``saturationPercent`` or it
has no routable endpoint. The mean, not the least-loaded endpoint, so that a tier spills
when it is full as a whole, not when one replica happens to be idle for an instant; the
picker's scorers still spread work within the tier.

Generations that no tier names make one more tier after the last, saturated only at
100 %: a variant left out of the list is still served, last. ``select`` returns None
when every tier is saturated: the caller then tries the fallback model, and otherwise
routes over all tiers (``Selection.tier`` None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gpufleet.api.spillover import Spillover
from gpufleet.routing.model import Candidate

UNLISTED = "other"


@dataclasses.dataclass(frozen=True, slots=True)
class TierLoad:
    """One tier's routable endpoints and their mean utilisation in [0, 1+]."""

    index: int
    generations: tuple[str, ...]
    threshold: float
    endpoints: int
    utilisation: float

    @property
    def saturated(self) -> bool:
        return self.endpoints == 0 or self.utilisation >= self.threshold


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """The candidates of tier ``tier`` (its index in ``loads``) that have room."""

    tier: int
    candidates: list[Candidate]


def utilisation(candidate: Candidate) -> float:
    """The endpoint's fuller resource: sequence slots or KV cache, as a fraction."""
    load, endpoint = candidate.load, candidate.endpoint
    slots = load.in_flight / max(endpoint.max_in_flight, 1)
    return max(slots, kv_use(candidate))


def kv_use(candidate: Candidate) -> float:
    """KV-cache use in [0, 1+]: vLLM's figure, else the router's count of the KV its
    requests in flight will hold (prompt + expected output) over the capacity (0 when
    the capacity is unknown)."""
    signals = candidate.load.signals
    if signals is not None and signals.kv_usage is not None:
        return signals.kv_usage
    capacity = candidate.endpoint.kv_capacity_tokens
    return candidate.load.kv_tokens / capacity if capacity else 0.0


def tiers_of(spec: Spillover, candidates: Sequence[Candidate]) -> list[tuple[str, ...]]:
    """The tiers' generations in order, with the unlisted generations present among
    ``candidates`` as one more tier (none when every one is listed)."""
    listed: list[tuple[str, ...]] = [tuple(t.generations) for t in spec.tiers]
    named = {g for tier in listed for g in tier}
    rest = tuple(sorted({c.endpoint.gpu for c in candidates} - named))
    return [*listed, rest] if rest else listed


def loads(spec: Spillover, candidates: Sequence[Candidate]) -> list[TierLoad]:
    """Each tier's utilisation over ``candidates`` (the routable endpoints of one model)."""
    thresholds = [t.saturation_percent / 100 for t in spec.tiers]
    out = []
    for index, generations in enumerate(tiers_of(spec, candidates)):
        members = [utilisation(c) for c in candidates if c.endpoint.gpu in generations]
        mean = sum(members) / len(members) if members else 0.0
        threshold = thresholds[index] if index < len(thresholds) else 1.0
        out.append(TierLoad(index, generations, threshold, len(members), mean))
    return out


def select(
    spec: Spillover, routable: Sequence[Candidate], free: Sequence[Candidate]
) -> Selection | None:
    """The first unsaturated tier (judged over ``routable``) and its members among
    ``free`` (those below their request limit); None when every tier is saturated.
    Without tiers, all of ``free`` as tier 0."""
    if not spec.tiers:
        return Selection(0, list(free))
    for tier in loads(spec, routable):
        members = [c for c in free if c.endpoint.gpu in tier.generations]
        if not tier.saturated and members:
            return Selection(tier.index, members)
    return None


def describe(spec: Spillover, routable: Sequence[Candidate]) -> str:
    """Why every tier is saturated, with each tier's utilisation."""
    figures = ", ".join(
        f"{'+'.join(t.generations)} {round(t.utilisation * 100)} % of {round(t.threshold * 100)} %"
        for t in loads(spec, routable)
    )
    return f"every spillover tier is saturated ({figures})"
