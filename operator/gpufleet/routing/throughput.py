"""Throughput learned online: an exponentially weighted mean of each endpoint's
observed decode rate (tokens/s per request), used in ``auto`` generation-weight mode.

A learned throughput keeps the catalog's scale: an endpoint's weight is the catalog
mean of the observed endpoints x (its rate / their mean rate), so learning only moves
endpoints relative to each other. Until ``min_samples`` requests finished on an
endpoint, its catalog weight stands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


@dataclasses.dataclass(slots=True)
class _Rate:
    value: float
    at: float
    samples: int


@dataclasses.dataclass(slots=True)
class Learner:
    half_life_s: float
    min_samples: int
    _rates: dict[str, _Rate] = dataclasses.field(default_factory=dict)

    def observe(self, endpoint: str, *, tokens: int, seconds: float, now: float) -> None:
        """Record one finished request's decode rate (ignored when not measurable)."""
        if tokens <= 1 or seconds <= 0:
            return
        rate = tokens / seconds
        old = self._rates.get(endpoint)
        if old is None:
            self._rates[endpoint] = _Rate(rate, now, 1)
            return
        keep = math.pow(0.5, max(0.0, now - old.at) / self.half_life_s)
        keep = min(keep, 1 - 1 / (old.samples + 1))
        self._rates[endpoint] = _Rate(keep * old.value + (1 - keep) * rate, now, old.samples + 1)

    def forget(self, endpoint: str) -> None:
        self._rates.pop(endpoint, None)

    def rates(self) -> Mapping[str, float]:
        """Learned rates (tokens/s) of endpoints with enough samples."""
        return {e: r.value for e, r in self._rates.items() if r.samples >= self.min_samples}

    def weights(self, catalog: Mapping[str, float]) -> dict[str, float]:
        """Throughput per endpoint: learned where known, else ``catalog``'s."""
        learned = {e: r for e, r in self.rates().items() if e in catalog}
        if not learned:
            return dict(catalog)
        scale = sum(catalog[e] for e in learned) / sum(learned.values())
        return {e: learned[e] * scale if e in learned else w for e, w in catalog.items()}
