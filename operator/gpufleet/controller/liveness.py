"""Is the ModelPool watch still delivering? A pure tracker of what it has and has not seen.

Kopf has been seen to stop watching after API-server disconnects while its process stays
up; silence on a watch is normal for an idle cluster, so silence alone proves nothing.
What does: a LIST shows a pool at a resourceVersion the watch never delivered, and the
difference outlives a grace period (a watch is a little behind a LIST at times). The
tracker keeps the versions the watch delivered and, on each ``check`` against a fresh
LIST, when each disagreement was first seen; ``stale`` says whether one is older than
the grace. Time is passed in (monotonic seconds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# (namespace, name) of a ModelPool.
Key = tuple[str, str]


@dataclasses.dataclass
class WatchTracker:
    """Versions delivered by the watch, and disagreements with the last LIST."""

    grace_seconds: float
    seen: dict[Key, str] = dataclasses.field(default_factory=dict)
    mismatched_since: dict[Key, float] = dataclasses.field(default_factory=dict)

    def delivered(self, key: Key, resource_version: str | None) -> None:
        """The watch delivered ``key`` at this version (None: a deletion)."""
        if resource_version is None:
            self.seen.pop(key, None)
        else:
            self.seen[key] = resource_version

    def check(self, listed: Mapping[Key, str], now: float) -> None:
        """Compare with a LIST taken at ``now``."""
        keys = set(listed) | set(self.seen)
        differing = {k for k in keys if listed.get(k) != self.seen.get(k)}
        self.mismatched_since = {k: self.mismatched_since.get(k, now) for k in differing}

    def stale(self, now: float) -> list[Key]:
        """Keys the watch has been wrong about for longer than the grace period."""
        return [k for k, since in self.mismatched_since.items() if now - since > self.grace_seconds]
