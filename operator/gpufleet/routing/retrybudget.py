"""A rolling retry budget: retries may add at most ``ratio`` of the requests of the
last ``window_s`` seconds, plus ``floor`` retries, so a failing fleet is not hit by a
multiple of its traffic, yet retries never run out for good (as Finagle's budget).

Counts are kept in ten buckets per window, so memory does not grow with traffic. All
time comes in as ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import collections
import dataclasses

_BUCKETS_PER_WINDOW = 10


@dataclasses.dataclass(slots=True)
class _Bucket:
    start: float
    requests: int = 0
    retries: int = 0


@dataclasses.dataclass(slots=True)
class RetryBudget:
    ratio: float = 0.2
    floor: int = 10
    window_s: float = 10.0
    _buckets: collections.deque[_Bucket] = dataclasses.field(default_factory=collections.deque)

    def on_request(self, now: float) -> None:
        """A client request arrived (its retries are not requests)."""
        self._current(now).requests += 1

    def try_retry(self, now: float) -> bool:
        """Take one retry if the window's budget has room; False leaves it untouched."""
        bucket = self._current(now)
        requests = sum(b.requests for b in self._buckets)
        retries = sum(b.retries for b in self._buckets)
        if retries >= self.ratio * requests + self.floor:
            return False
        bucket.retries += 1
        return True

    def _current(self, now: float) -> _Bucket:
        """The bucket ``now`` falls in, after dropping those older than the window."""
        while self._buckets and self._buckets[0].start <= now - self.window_s:
            self._buckets.popleft()
        width = self.window_s / _BUCKETS_PER_WINDOW
        start = now - now % width
        if not self._buckets or self._buckets[-1].start < start:
            self._buckets.append(_Bucket(start))
        return self._buckets[-1]
