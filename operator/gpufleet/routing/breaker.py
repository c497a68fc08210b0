"""A per-endpoint circuit breaker over an injected clock.

Closed: requests flow; ``consecutive_failures`` failures in a row open it. Open: no
requests for ``open_seconds``. Then half-open: up to ``half_open_requests`` trial
requests; a success closes it, a failure opens it again. Busy answers (429/503) are
backpressure and are recorded as neither success nor failure by the caller; every
attempt is ``release``d when over, so a probe without a verdict never keeps its slot.

``follows_request`` tells failures that follow a request from those of its endpoints:
when every endpoint tried failed one request with the same status, the request is at
fault (a poison request), and counting it would eject the whole fleet.

``on_change`` (optional) hears every transition as it happens: ``open`` when failures
open the circuit (again, after a failed probe), ``half-open`` when the first probe is
sent, ``closed`` when a success closes it; the router logs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from gpufleet.api.runtime import CircuitBreaker as BreakerPolicy
from gpufleet.routing.model import CircuitState


@dataclasses.dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy
    failures: int = 0
    opened_at: float | None = None
    probes: int = 0
    on_change: Callable[[CircuitState], None] | None = None
    announced: float | None = dataclasses.field(default=None, init=False, repr=False)

    def state(self, now: float) -> CircuitState:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at < self.policy.open_seconds:
            return "open"
        return "half-open"

    def probe_available(self, now: float) -> bool:
        """Whether a request may be sent now (always when closed)."""
        state = self.state(now)
        if state == "half-open":
            return self.probes < self.policy.half_open_requests
        return state == "closed"

    def on_attempt(self, now: float) -> float | None:
        """A request is being sent; in half-open it takes a probe slot. Returns the probe
        (the opening it probes) to hand to ``release``, or None when it took no slot."""
        if self.state(now) != "half-open":
            return None
        if self.announced != self.opened_at:  # once per opening, not per probe
            self.announced = self.opened_at
            self._changed("half-open")
        self.probes += 1
        return self.opened_at

    def release(self, probe: float | None) -> None:
        """The request of ``on_attempt`` is over. A probe that got no verdict (its
        client went away, or the engine was busy) gives its slot back; one that did has
        already closed or re-opened the circuit, which resets the slots."""
        if probe is not None and probe == self.opened_at and self.probes > 0:
            self.probes -= 1

    def on_success(self) -> None:
        was_open = self.opened_at is not None
        self.failures, self.opened_at, self.probes = 0, None, 0
        if was_open:
            self._changed("closed")

    def on_failure(self, now: float) -> None:
        """One failure; opens the circuit at the threshold or on a failed probe."""
        self.failures += 1
        before = self.state(now)
        if before == "half-open" or self.failures >= self.policy.consecutive_failures:
            self.opened_at, self.probes = now, 0
            if before != "open":
                self._changed("open")

    def _changed(self, state: CircuitState) -> None:
        if self.on_change is not None:
            self.on_change(state)


def follows_request(statuses: Sequence[int], *, served: bool) -> bool:
    """Whether one request's upstream error statuses (one per endpoint tried, in order)
    are the request's doing rather than the endpoints': no endpoint served it, at least
    two failed it, and all alike. One failure alone is blamed on its endpoint."""
    return not served and len(statuses) >= 2 and len(set(statuses)) == 1
