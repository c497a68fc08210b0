"""Conditions and Events of any gpufleet status, by the Kubernetes API conventions.

Pure; the clock is an argument. A condition's ``lastTransitionTime`` moves only when its
status flips (a new message alone keeps it), so computing the status of an unchanged
object yields an equal value and nothing is written; ``transitions`` says which Events
to post when a condition flipped.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from gpufleet.api import common


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to post about a condition that flipped."""

    type: str  # Normal or Warning
    reason: str
    message: str


def condition(
    item: tuple[str, str, str, str],
    previous: Mapping[str, common.Condition],
    *,
    generation: int,
    now: str,
) -> common.Condition:
    """The condition (type, status, reason, message), keeping the previous one's
    ``lastTransitionTime`` when its status is unchanged."""
    kind, state, reason, message = item
    old = previous.get(kind)
    since = old.last_transition_time if old is not None and old.status == state else now
    return common.Condition(
        type=kind,
        status=state,
        reason=reason,
        message=message[:32768],
        last_transition_time=since,
        observed_generation=generation,
    )


def rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_epoch(seconds: float) -> str:
    return rfc3339(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def _event_type(condition: common.Condition) -> str:
    healthy = {"Ready": "True", "Degraded": "False"}.get(condition.type, condition.status)
    return "Normal" if condition.status == healthy else "Warning"


def transitions(
    previous: common.ObservedStatus | None, current: common.ObservedStatus
) -> list[Event]:
    """An Event for every condition whose status flipped (or first appeared): Warning when
    it flipped to unhealthy (Ready False, Degraded True), Normal otherwise."""
    old = {c.type: c.status for c in (previous.conditions if previous else ())}
    return [
        Event(
            type=_event_type(c),
            reason=c.reason or f"{c.type}{c.status}",
            message=f"{c.type}={c.status}: {c.message}"[:1024],
        )
        for c in current.conditions
        if old.get(c.type) != c.status
    ]
