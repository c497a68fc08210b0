"""Admission: who a request belongs to and whether its tenant may send it now (the
order in which queued requests get an endpoint is ``gpufleet.routing.waitqueue``'s).

- ``KeyRing`` maps SHA-256 digests of API keys to tenants (the keys themselves are not
  kept), compared in constant time;
- ``TokenBucket`` enforces tokens per minute: it refills continuously, and says how
  long until a request of a given size fits. A request is charged its estimate up to
  one minute's quota (a larger one empties a full bucket, so it is not starved and
  cannot put the tenant days into debt), then settled against what it used: the
  difference is given back or taken, and the debt never passes one minute's quota;
- ``Quotas`` holds each tenant's bucket and its requests in flight;
- ``used_tokens`` says what a request used, for the settlement: its usage when known,
  nothing when it got no answer (refused, failed, or a client gone before the first
  byte), otherwise unknown (the charge stands).

All time comes in as ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
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

    def charge(self, tokens: float) -> float:
        """What a request estimated at ``tokens`` is charged: at most one minute's quota."""
        return min(tokens, self.per_minute)

    def take(self, tokens: float, now: float) -> float:
        """Take the charge for ``tokens`` and return 0, or take nothing and return
        seconds until it fits."""
        self._refill(now)
        charged = self.charge(tokens)
        if charged <= self.level:
            self.level -= charged
            return 0.0
        return (charged - self.level) / (self.per_minute / 60)

    def settle(self, charged: float, used: float, now: float) -> None:
        """A request charged ``charged`` used ``used``: give back the difference, or take
        it, the debt bounded by one minute's quota."""
        self._refill(now)
        self.level = min(self.per_minute, max(-self.per_minute, self.level + charged - used))


def used_tokens(status: int | None, usage_tokens: int | None) -> float | None:
    """The tokens a request used, for its settlement: its usage (reported, or counted
    from its stream) when known; none when it got no answer — refused, failed before
    the first byte (``status`` None or an error); None otherwise (served, usage unknown,
    such as a stream the client left: the charge stands)."""
    if usage_tokens is not None:
        return float(usage_tokens)
    if status is None or status >= 400:
        return 0.0
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """``retry_after_s`` 0 when admitted; otherwise why not and when to retry."""

    retry_after_s: float = 0.0
    reason: str = ""
    charged: float = 0.0  # tokens taken from the tenant's bucket (none without a rate)

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
            charged = bucket.charge(tokens)
        else:
            charged = 0.0
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
        return Verdict(charged=charged)

    def release(self, tenant: str) -> None:
        self._in_flight[tenant] = max(0, self._in_flight.get(tenant, 0) - 1)

    def settle(self, tenant: str, charged: float, used: float | None, now: float) -> None:
        """Settle an admitted request's charge against what it ``used`` (None: unknown,
        the charge stands). A bucket replaced since (a new rate) is not touched."""
        bucket = self._buckets.get(tenant)
        if used is None or not charged or bucket is None:
            return
        bucket.settle(charged, used, now)

    def reconfigure(
        self, tenants: Mapping[str, Tenant], anonymous_tokens_per_minute: int | None
    ) -> None:
        """New limits; requests in flight stay counted, and a tenant's bucket is kept
        unless its rate changed (a new rate starts full)."""
        self.tenants, self.anonymous_tokens_per_minute = tenants, anonymous_tokens_per_minute
        self._buckets = {t: b for t, b in self._buckets.items() if b.per_minute == self._rate(t)}

    def in_flight(self, tenant: str) -> int:
        return self._in_flight.get(tenant, 0)
