"""Prefix affinity by consistent hashing with bounded loads, and session affinity.

``prefix_key`` hashes a prompt's leading characters. ``Ring`` places every endpoint at
``VNODES`` points of a 64-bit hash ring; ``bounded_target`` walks the ring clockwise
from a key and returns the first endpoint whose load is at most ``ratio`` x the mean
(Mirrokni et al., "Consistent Hashing with Bounded Loads", 2018), so a hot prefix
spills to its ring successors instead of swamping one endpoint. ``SessionTable``
remembers which endpoint served a session, for ``ttl`` seconds of the injected clock.

A session is known by ``session_key``: a fixed-size digest of its tenant and the id the
client sent, so one tenant cannot re-pin another's session by sending the same id, and
an entry's size does not depend on the id (an 8 KB id is 32 characters here): the table
is bounded in bytes by ``MAX_SESSIONS`` x (``SESSION_KEY_CHARS`` + an endpoint id).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Mapping

VNODES = 64
MAX_SESSIONS = 100_000
SESSION_KEY_CHARS = 32


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def prefix_key(text: str, chars: int) -> int:
    """Stable 64-bit key of the first ``chars`` characters of ``text``."""
    return _hash(text[:chars].encode("utf-8", "surrogatepass"))


def session_key(tenant: str, session: str) -> str:
    """The table's key of ``session`` sent by ``tenant`` ("" for no tenant)."""
    data = tenant.encode() + b"\0" + session.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=SESSION_KEY_CHARS // 2).hexdigest()


class Ring:
    """A consistent-hash ring over endpoint ids (immutable once built)."""

    def __init__(self, ids: Iterable[str], vnodes: int = VNODES) -> None:
        points = sorted((_hash(f"{i}#{n}".encode()), i) for i in set(ids) for n in range(vnodes))
        self._keys = [p for p, _ in points]
        self._ids = [i for _, i in points]
        self.members = frozenset(self._ids)

    def walk(self, key: int) -> Iterator[str]:
        """Distinct ids clockwise from ``key``."""
        if not self._keys:
            return
        start = bisect.bisect_left(self._keys, key)
        seen: set[str] = set()
        for offset in range(len(self._keys)):
            member = self._ids[(start + offset) % len(self._keys)]
            if member not in seen:
                seen.add(member)
                yield member
                if len(seen) == len(self.members):
                    return


def bounded_target(
    ring: Ring, key: int, loads: Mapping[str, float], *, ratio: float, added: float = 1.0
) -> str | None:
    """The first id on the ring from ``key`` among ``loads`` whose load stays within
    ``ratio`` x the mean once ``added`` is placed; None when ``loads`` is empty."""
    if not loads:
        return None
    bound = ratio * (sum(loads.values()) + added) / len(loads)
    fallback = None
    for member in ring.walk(key):
        if member not in loads:
            continue
        fallback = fallback or member
        if loads[member] + added <= bound:
            return member
    return fallback


@dataclasses.dataclass(slots=True)
class SessionTable:
    """Session id -> endpoint id, each entry living ``ttl_s`` from its last use."""

    ttl_s: float
    max_entries: int = MAX_SESSIONS
    _entries: collections.OrderedDict[str, tuple[str, float]] = dataclasses.field(
        default_factory=collections.OrderedDict
    )

    def get(self, session: str, now: float) -> str | None:
        """The endpoint of a live session, or None (an expired entry is dropped)."""
        entry = self._entries.get(session)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[session]
            return None
        return entry[0]

    def put(self, session: str, endpoint: str, now: float) -> None:
        """Remember ``endpoint`` for ``session``; the oldest entry goes when full."""
        self._entries.pop(session, None)
        self._entries[session] = (endpoint, now + self.ttl_s)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
