"""Throughput learned online: how each endpoint's observed speed compares with its prior.

Three kinds of rate sample (tokens/s per request), each compared only with its own kind:

- ``stream``: a finished stream's decode rate (events after the first chunk over the
  time since it);
- ``whole``: an answer that was not streamed, its usage's completion tokens over the
  whole request's duration (includes queueing and prefill, so it is lower);
- ``counter``: the engine's generated-token counter over Prometheus's rate window,
  divided by its mean number of running requests (one read per signal refresh, only
  when the engine was busy: at least one request running on average).

Each kind is an exponentially weighted mean per endpoint with a short half-life (15 s
by default), so a change of speed at any time — after ten minutes of steady service as
much as at start — is re-weighted within a minute: after 60 s the data from before the
change weighs 0.5^4 = 6 %. Two rules keep one request from moving it: the first
``min_samples`` samples are equal-weighted and no estimate is used before then, and
afterwards one request sample never weighs more than 2 / (``min_samples`` + 1) however
long the gap since the last — the weight at which an exponential mean's effective
sample size is ``min_samples`` — so a quiet endpoint follows its last ``min_samples``
or so requests instead of the clock. A counter read already aggregates every token the
engine generated in the window, so it is weighted by time alone and used from
``COUNTER_MIN_READS`` busy reads on.

An endpoint's learned weight is its prior x its *relative speed*: its rate / its prior,
over the median of that figure across the endpoints with a usable estimate of the same
kind, averaged over the kinds by their sample counts. An endpoint running as fast as
its prior says keeps its prior exactly; one silently throttled to half speed gets about
half; the median makes the scale robust to the outlier being learned.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from typing import Literal

Kind = Literal["stream", "whole", "counter"]
KINDS: tuple[Kind, ...] = ("stream", "whole", "counter")
DEFAULT_HALF_LIFE_S = 15.0
# rate() needs two scrapes and a read is a 1-minute aggregate: three busy reads in a
# row are the engine's own account of many requests, never of a single short one.
COUNTER_MIN_READS = 3
# Below one running request on average the engine was idle part of the window, and
# tokens / running would mix idle time into the rate.
COUNTER_MIN_RUNNING = 1.0


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
        floor = 1 - 2 / (self.min_samples + 1)
        self._update(endpoint, tokens / seconds, now, kind, floor=floor)

    def observe_counter(
        self, endpoint: str, *, tokens_per_s: float, running: float, now: float
    ) -> None:
        """Record one Prometheus read: generated tokens/s and mean running requests over
        the same window (ignored when the engine was not busy throughout)."""
        if running < COUNTER_MIN_RUNNING or not tokens_per_s > 0 or not math.isfinite(running):
            return
        self._update(endpoint, tokens_per_s / running, now, "counter", floor=0.0)

    def _update(self, endpoint: str, rate: float, now: float, kind: Kind, floor: float) -> None:
        old = self._rates.get((endpoint, kind))
        if old is None:
            self._rates[(endpoint, kind)] = _Rate(rate, now, 1)
            return
        keep = max(math.pow(0.5, max(0.0, now - old.at) / self.half_life_s), floor)
        keep = min(keep, 1 - 1 / (old.samples + 1))
        value = keep * old.value + (1 - keep) * rate
        self._rates[(endpoint, kind)] = _Rate(value, now, old.samples + 1)

    def forget(self, endpoint: str) -> None:
        for kind in KINDS:
            self._rates.pop((endpoint, kind), None)

    def _enough(self, kind: Kind) -> int:
        return COUNTER_MIN_READS if kind == "counter" else self.min_samples

    def rates(self, kind: Kind = "stream") -> Mapping[str, float]:
        """Learned rates (tokens/s) of endpoints with enough samples of ``kind``."""
        return {
            e: r.value
            for (e, k), r in self._rates.items()
            if k == kind and r.samples >= self._enough(kind)
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
