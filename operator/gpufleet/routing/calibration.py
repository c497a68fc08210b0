"""How far each endpoint's real latency runs past its predictions: the margin the
``cost`` objective keeps before it calls a candidate "meets the SLO". Pure, apart from
``Spread``'s state.

The predictions (``gpufleet.routing.objective``) are means of a straight-line curve;
a class's SLO bounds the 90th percentile. What spreads the real times around the mean
— prefix-cache hits, contexts longer or shorter than the curve's, chunked prefill of a
burst, a busy host — differs by endpoint and by load, so no one fixed headroom fits:
too little and requests placed at the SLO's edge miss it, too much and cheap
endpoints are left idle.

``Spread`` keeps, per endpoint and per measure (TTFT, TPOT), the ratios observed /
predicted of its last ``WINDOW`` requests younger than ``MAX_AGE_S``; ``margin`` is their
``QUANTILE``-th, within ``[MIN_FACTOR, MAX_FACTOR]``. A prediction times its margin is
then the endpoint's predicted 90th percentile. Until an endpoint has ``MIN_SAMPLES``
ratios of a measure, its margin is ``DEFAULT_FACTOR`` (a prediction must leave a fifth
of the bound to spare).

A margin learned from the last two minutes lags a queue that builds in seconds, and a
request placed at the SLO's edge misses on any error the ratios did not see. So
``Attainment`` closes the loop on what the SLO is about: per request class, a
*tightening* factor (at least 1, at most ``MAX_TIGHTENING``) on every margin, steered
by the class's served requests as the router's accounting judges them
(``gpufleet.routing.accounting``). Each miss multiplies it by
``exp(STEP x TARGET_ATTAINMENT)``, each request that met the SLO by
``exp(-STEP x (1 - TARGET_ATTAINMENT))``, so it settles where
``TARGET_ATTAINMENT`` of the class's requests meet their SLO — above the 90 % a p90
bound asks for, to keep some cushion — and relaxes again as they do (from the bound
to 1 within ~280 requests that met it).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Literal

Measure = Literal["ttft", "tpot"]
WINDOW = 64
MAX_AGE_S = 120.0
MIN_SAMPLES = 8
QUANTILE = 0.9
DEFAULT_FACTOR = 1.25
MIN_FACTOR = 0.8
MAX_FACTOR = 4.0
TARGET_ATTAINMENT = 0.95
STEP = 0.1
MAX_TIGHTENING = 4.0


@dataclasses.dataclass(frozen=True, slots=True)
class Margin:
    """Factors that turn an endpoint's mean predictions into its 90th percentiles."""

    ttft: float = DEFAULT_FACTOR
    tpot: float = DEFAULT_FACTOR

    def tightened(self, factor: float) -> Margin:
        """Both factors times ``factor`` (a class's ``Attainment.factor``)."""
        return Margin(self.ttft * factor, self.tpot * factor)


DEFAULT = Margin()


@dataclasses.dataclass(slots=True)
class Spread:
    """Ratios observed / predicted per endpoint and measure (see the module docstring)."""

    _ratios: dict[tuple[str, Measure], collections.deque[tuple[float, float]]] = dataclasses.field(
        default_factory=dict
    )

    def observe(
        self, endpoint: str, measure: Measure, *, predicted: float, observed: float, now: float
    ) -> None:
        """One request's ``observed`` seconds against the ``predicted`` ones it was
        routed on; ignored unless both are positive and finite."""
        if not (predicted > 0 and observed > 0 and math.isfinite(predicted + observed)):
            return
        ratios = self._ratios.setdefault((endpoint, measure), collections.deque(maxlen=WINDOW))
        ratios.append((now, observed / predicted))

    def factor(self, endpoint: str, measure: Measure, now: float) -> float | None:
        """The ``QUANTILE``-th ratio of the recent ones, bounded; None with too few."""
        ratios = self._ratios.get((endpoint, measure))
        if not ratios:
            return None
        while ratios and now - ratios[0][0] > MAX_AGE_S:
            ratios.popleft()
        if len(ratios) < MIN_SAMPLES:
            return None
        ordered = sorted(r for _, r in ratios)
        value = ordered[min(len(ordered) - 1, math.ceil(QUANTILE * len(ordered)) - 1)]
        return min(MAX_FACTOR, max(MIN_FACTOR, value))

    def forget(self, endpoint: str) -> None:
        for measure in ("ttft", "tpot"):
            self._ratios.pop((endpoint, measure), None)

    def margin(self, endpoint: str, now: float) -> Margin:
        """The endpoint's factors, ``DEFAULT_FACTOR`` for a measure not yet learned."""
        ttft, tpot = self.factor(endpoint, "ttft", now), self.factor(endpoint, "tpot", now)
        return Margin(
            DEFAULT_FACTOR if ttft is None else ttft, DEFAULT_FACTOR if tpot is None else tpot
        )


@dataclasses.dataclass(slots=True)
class Attainment:
    """A tightening factor per request class (see the module docstring)."""

    _factors: dict[str, float] = dataclasses.field(default_factory=dict)

    def observe(self, klass: str, *, met: bool) -> None:
        """One served request of ``klass`` met its SLO, or not."""
        missed = 0.0 if met else 1.0
        moved = self.factor(klass) * math.exp(STEP * (missed - (1 - TARGET_ATTAINMENT)))
        self._factors[klass] = min(MAX_TIGHTENING, max(1.0, moved))

    def factor(self, klass: str) -> float:
        """``klass``'s tightening: 1 until its requests miss."""
        return self._factors.get(klass, 1.0)

    def factors(self) -> dict[str, float]:
        """Every class's tightening, by name."""
        return dict(sorted(self._factors.items()))
