"""Throughput learned online: how each endpoint's observed speed compares with its prior.

Every finished request gives one rate sample (tokens/s): a stream's decode rate (events
after the first chunk over the time since it), or for an answer that is not streamed
its usage's completion tokens over the whole request's duration. The two kinds are kept
apart (a whole-request rate includes queueing and prefill, so it is lower) and each is
an exponentially weighted mean per endpoint, equal-weighted over the first samples.

An endpoint's learned weight is its prior x its *relative speed*: its rate / its prior,
over the median of that figure across the endpoints with at least ``min_samples``
samples of the same kind. An endpoint running as fast as its prior says keeps its prior
exactly; one silently throttled to half speed gets about half; the median makes the
scale robust to the outlier being learned. Until ``min_samples`` requests finished on an
endpoint (never from one request), its prior stands.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from typing import Literal

Kind = Literal["stream", "whole"]
KINDS: tuple[Kind, ...] = ("stream", "whole")


@dataclasses.dataclass(slots=True)
class _Rate:
    value: float
    at: float
    samples: int


@dataclasses.dataclass(slots=True)
class Learner:
    half_life_s: float
    min_samples: int
    _rates: dict[tuple[str, Kind], _Rate] = dataclasses.field(default_factory=dict)

    def observe(
        self, endpoint: str, *, tokens: int, seconds: float, now: float, kind: Kind = "stream"
    ) -> None:
        """Record one finished request's rate (ignored when not measurable)."""
        if tokens <= 1 or seconds <= 0:
            return
        rate = tokens / seconds
        old = self._rates.get((endpoint, kind))
        if old is None:
            self._rates[(endpoint, kind)] = _Rate(rate, now, 1)
            return
        keep = math.pow(0.5, max(0.0, now - old.at) / self.half_life_s)
        keep = min(keep, 1 - 1 / (old.samples + 1))
        value = keep * old.value + (1 - keep) * rate
        self._rates[(endpoint, kind)] = _Rate(value, now, old.samples + 1)

    def forget(self, endpoint: str) -> None:
        for kind in KINDS:
            self._rates.pop((endpoint, kind), None)

    def rates(self, kind: Kind = "stream") -> Mapping[str, float]:
        """Learned rates (tokens/s) of endpoints with enough samples of ``kind``."""
        return {
            e: r.value
            for (e, k), r in self._rates.items()
            if k == kind and r.samples >= self.min_samples
        }

    def relative_speeds(self, prior: Mapping[str, float]) -> dict[str, float]:
        """Each learned endpoint's speed relative to its prior (1.0: as the prior says)."""
        votes: dict[str, list[tuple[float, int]]] = {}
        for kind in KINDS:
            ratios = {e: r / prior[e] for e, r in self.rates(kind).items() if prior.get(e)}
            if not ratios:
                continue
            middle = statistics.median(ratios.values())
            for endpoint, ratio in ratios.items():
                samples = self._rates[(endpoint, kind)].samples
                votes.setdefault(endpoint, []).append((ratio / middle, samples))
        return {e: _weighted_mean(v) for e, v in votes.items()}

    def weights(self, prior: Mapping[str, float]) -> dict[str, float]:
        """Throughput per endpoint: prior x learned relative speed where known."""
        speeds = self.relative_speeds(prior)
        return {e: w * speeds.get(e, 1.0) for e, w in prior.items()}


def _weighted_mean(values: list[tuple[float, int]]) -> float:
    return sum(v * n for v, n in values) / sum(n for _, n in values)
