"""Admission: who a request belongs to, whether its tenant may send it now, and the
order in which queued requests get an endpoint.

- ``KeyRing`` maps SHA-256 digests of API keys to tenants (the keys themselves are not
  kept), compared in constant time;
- ``TokenBucket`` enforces tokens per minute: it refills continuously, may go into
  debt once when full (so a request larger than the quota is not starved), and says
  how long until a request of a given size fits;
- ``WaitQueue`` orders waiting tickets by priority (higher first), FIFO within, and
  when full sheds the lowest-priority newest ticket — possibly the newcomer. It also
  knows what each ticket waits for (``Waiting``: a pool, held or queued), which adds up
  to the demand per pool (``Demand``) the autoscaler reads.

All time comes in as ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import hmac
import itertools
from collections.abc import Mapping

from gpufleet.api.admission import Tenant

ANONYMOUS = "anonymous"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class UnknownKey(Exception):
    """An API key was sent but belongs to no tenant."""


class KeyRing:
    """Tenant lookup by API key."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        """``keys`` maps tenant name -> API key."""
        self._digests = [(digest(k), tenant) for tenant, k in keys.items()]

    def tenant(self, key: str | None) -> str | None:
        """The tenant of ``key``; None when no key was sent; ``UnknownKey`` if unknown."""
        if key is None:
            return None
        sent = digest(key)
        found = None
        for known, tenant in self._digests:
            if hmac.compare_digest(known, sent):
                found = tenant
        if found is None:
            raise UnknownKey
        return found


@dataclasses.dataclass(slots=True)
class TokenBucket:
    per_minute: float
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: float, now: float) -> TokenBucket:
        return cls(per_minute, per_minute, now)

    def _refill(self, now: float) -> None:
        rate = self.per_minute / 60
        self.level = min(self.per_minute, self.level + rate * max(0.0, now - self.updated))
        self.updated = now

    def take(self, tokens: float, now: float) -> float:
        """Take ``tokens`` and return 0, or take nothing and return seconds to wait."""
        self._refill(now)
        if tokens <= self.level or self.level >= self.per_minute:
            self.level -= tokens
            return 0.0
        return (min(tokens, self.per_minute) - self.level) / (self.per_minute / 60)

    def give_back(self, tokens: float) -> None:
        """Return tokens taken for a request that was not served."""
        self.level = min(self.per_minute, self.level + tokens)


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """``retry_after_s`` 0 when admitted; otherwise why not and when to retry."""

    retry_after_s: float = 0.0
    reason: str = ""

    @property
    def admitted(self) -> bool:
        return not self.reason


@dataclasses.dataclass(slots=True)
class Quotas:
    """Per-tenant token rate and concurrency."""

    tenants: Mapping[str, Tenant]
    anonymous_tokens_per_minute: int | None = None
    _buckets: dict[str, TokenBucket] = dataclasses.field(default_factory=dict)
    _in_flight: dict[str, int] = dataclasses.field(default_factory=dict)

    def _rate(self, tenant: str) -> int | None:
        spec = self.tenants.get(tenant)
        return spec.tokens_per_minute if spec else self.anonymous_tokens_per_minute

    def admit(self, tenant: str, tokens: float, now: float) -> Verdict:
        """Check concurrency, then take tokens; on success the request is in flight."""
        spec = self.tenants.get(tenant)
        limit = spec.max_concurrent_requests if spec else None
        if limit is not None and self._in_flight.get(tenant, 0) >= limit:
            return Verdict(1.0, f"tenant {tenant} has {limit} requests in flight (its limit)")
        rate = self._rate(tenant)
        if rate is not None:
            bucket = self._buckets.setdefault(tenant, TokenBucket.full(rate, now))
            wait = bucket.take(tokens, now)
            if wait > 0:
                return Verdict(wait, f"tenant {tenant} is over its {rate} tokens per minute")
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
        return Verdict()

    def release(self, tenant: str) -> None:
        self._in_flight[tenant] = max(0, self._in_flight.get(tenant, 0) - 1)

    def reconfigure(
        self, tenants: Mapping[str, Tenant], anonymous_tokens_per_minute: int | None
    ) -> None:
        """New limits; requests in flight stay counted, and a tenant's bucket is kept
        unless its rate changed (a new rate starts full)."""
        self.tenants, self.anonymous_tokens_per_minute = tenants, anonymous_tokens_per_minute
        self._buckets = {t: b for t, b in self._buckets.items() if b.per_minute == self._rate(t)}

    def in_flight(self, tenant: str) -> int:
        return self._in_flight.get(tenant, 0)


@dataclasses.dataclass(order=True, frozen=True, slots=True)
class Ticket:
    """A queued request; sorts first when it should be served first."""

    sort_key: tuple[int, int]
    priority: int = dataclasses.field(compare=False)
    enqueued_at: float = dataclasses.field(compare=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Waiting:
    """What a queued request waits for: an endpoint of ``pool`` — one that exists but is
    saturated (``held`` False), or the pool's first ready one while it has none, as when
    it scales from zero (``held`` True)."""

    pool: str
    held: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Demand:
    """Requests waiting for one pool: ``queued`` behind saturated endpoints, ``held``
    for a pool with no ready endpoint."""

    queued: int = 0
    held: int = 0


@dataclasses.dataclass(slots=True)
class WaitQueue:
    """Bounded queue of tickets; ``order`` "priority" or "fifo"."""

    max_size: int
    order: str = "priority"
    _heap: list[Ticket] = dataclasses.field(default_factory=list)
    _gone: set[Ticket] = dataclasses.field(default_factory=set)
    _seq: itertools.count[int] = dataclasses.field(default_factory=itertools.count)
    _waiting: dict[Ticket, Waiting] = dataclasses.field(default_factory=dict)

    def push(
        self, priority: int, now: float, waiting: Waiting | None = None
    ) -> tuple[Ticket, Ticket | None]:
        """Queue a ticket waiting for ``waiting`` (counted in ``demand``); the second
        value is the ticket shed to make room (may be the new one itself, when the queue
        is full of equal or higher priority). Held and queued tickets share the bound."""
        rank = -priority if self.order == "priority" else 0
        ticket = Ticket((rank, next(self._seq)), priority, now)
        if self.max_size == 0:
            return ticket, ticket
        heapq.heappush(self._heap, ticket)
        if waiting is not None:
            self._waiting[ticket] = waiting
        if len(self) <= self.max_size:
            return ticket, None
        worst = max(t for t in self._heap if t not in self._gone)
        self.remove(worst)
        return ticket, worst

    def head(self) -> Ticket | None:
        """The ticket to serve next, or None."""
        while self._heap and self._heap[0] in self._gone:
            self._gone.discard(heapq.heappop(self._heap))
        return self._heap[0] if self._heap else None

    def in_order(self) -> list[Ticket]:
        """Every waiting ticket, the one to serve first first."""
        return sorted(t for t in self._heap if t not in self._gone)

    def remove(self, ticket: Ticket) -> None:
        """Drop ``ticket`` (served, timed out or cancelled); unknown tickets are ignored."""
        if ticket in self._heap and ticket not in self._gone:
            self._gone.add(ticket)
        self._waiting.pop(ticket, None)
        self.head()

    def wait_for(self, ticket: Ticket, waiting: Waiting) -> None:
        """``ticket`` now waits for ``waiting`` (a held request whose pool got endpoints
        that are all saturated is queued from then on); unknown tickets are ignored."""
        if ticket in self._heap and ticket not in self._gone:
            self._waiting[ticket] = waiting

    def waiting(self, ticket: Ticket) -> Waiting | None:
        return self._waiting.get(ticket)

    def demand(self) -> dict[str, Demand]:
        """Pool -> its requests waiting now, held and queued; only pools with some."""
        counts: dict[str, list[int]] = {}
        for waiting in self._waiting.values():
            counts.setdefault(waiting.pool, [0, 0])[waiting.held] += 1
        return {pool: Demand(queued, held) for pool, (queued, held) in sorted(counts.items())}

    def __len__(self) -> int:
        return len(self._heap) - len(self._gone)
