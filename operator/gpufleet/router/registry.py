"""The live endpoint set and the router's own accounting of each endpoint.

``Registry.replace`` swaps the endpoint set (discovery) without touching requests in
flight: a removed endpoint's ``Slot`` stays alive for its ``Lease`` holders and is
reported as draining until they finish. ``Lease`` is the only way load is added to an
endpoint, and ``release`` is idempotent, so completion, error and client cancel (all
in ``finally`` blocks) can never leak in-flight counts, pending tokens or a half-open
circuit's probe slot. ``listeners`` are called whenever the endpoint set changes (the
admission queue's waiters try again: a held request's pool may have its first endpoint).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable

from gpufleet.api.runtime import CircuitBreaker
from gpufleet.routing import affinity, breaker, queueing
from gpufleet.routing.model import Candidate, CircuitState, Endpoint, Load, Resident, Signals
from gpufleet.routing.objective import Prediction

Clock = Callable[[], float]
log = logging.getLogger("gpufleet.router.breaker")


@dataclasses.dataclass(slots=True)
class Slot:
    """Mutable state of one endpoint."""

    endpoint: Endpoint
    breaker: breaker.Breaker
    in_flight: int = 0
    pending_tokens: float = 0.0
    prefill_tokens: float = 0.0
    kv_tokens: float = 0.0
    prefill_rate: queueing.Rate = dataclasses.field(default_factory=queueing.Rate)
    healthy: bool = True
    signals: Signals | None = None
    signals_at: float | None = None
    requests: int = 0
    failures: int = 0
    # Prompt tokens ever sent here, and each lease in flight with a TPOT bound.
    prompt_tokens_sent: float = 0.0
    residents: dict[int, Resident] = dataclasses.field(default_factory=dict)


class Lease:
    """One request's claim on an endpoint: its cost is pending and its ``kv`` tokens
    (prompt + expected output) are held until released, and its prompt is prefill ahead
    of later requests until its first token (``first_token``). ``prefill_ahead`` (its
    own prompt included), ``batch`` and ``kv_ahead`` are what the endpoint had when it
    was leased, the inputs of the performance prediction it is compared with;
    ``predicted`` the prediction it was routed on (the ``cost`` strategy's), which the
    router compares with what it observes (``gpufleet.routing.calibration``). With
    ``tpot`` (its class's TPOT bound in seconds, its expected output tokens) it is one of
    the endpoint's ``Resident`` requests until released."""

    __slots__ = (
        "_kv", "_prefill", "_probe", "_released", "batch", "cost", "kv_ahead",
        "predicted", "prefill_ahead", "slot",
    )  # fmt: skip

    def __init__(
        self,
        slot: Slot,
        cost: float,
        *,
        probe: float | None = None,
        prefill: float = 0.0,
        kv: float = 0.0,
        tpot: tuple[float, int] | None = None,
    ) -> None:
        self.slot, self.cost, self._released = slot, cost, False
        self._probe, self._prefill, self._kv = probe, prefill, kv
        slot.in_flight += 1
        slot.pending_tokens += cost
        slot.prefill_tokens += prefill
        slot.kv_tokens += kv
        slot.requests += 1
        slot.prompt_tokens_sent += prefill
        if tpot is not None:
            slot.residents[id(self)] = Resident(*tpot, slot.prompt_tokens_sent)
        self.prefill_ahead, self.batch = slot.prefill_tokens, slot.in_flight
        self.kv_ahead = slot.kv_tokens
        self.predicted: Prediction | None = None

    @property
    def waited_for_kv(self) -> bool:
        """Whether the endpoint's KV cache was, by the router's count, too full to take
        it at once: its first token then waited for room, not for prefill alone."""
        capacity = self.slot.endpoint.kv_capacity_tokens
        return bool(capacity) and self.kv_ahead > capacity

    def first_token(self) -> None:
        """Its prompt is prefilled: no longer ahead of anyone."""
        self.slot.prefill_tokens = max(0.0, self.slot.prefill_tokens - self._prefill)
        self._prefill = 0.0

    def progress(self, tokens: float) -> None:
        """``tokens`` of the request's cost have been served."""
        if self._released:
            return
        served = min(tokens, self.cost)
        self.cost -= served
        self.slot.pending_tokens = max(0.0, self.slot.pending_tokens - served)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.first_token()
        self.slot.breaker.release(self._probe)
        self.slot.in_flight -= 1
        self.slot.residents.pop(id(self), None)
        self.slot.pending_tokens = max(0.0, self.slot.pending_tokens - self.cost)
        self.slot.kv_tokens = max(0.0, self.slot.kv_tokens - self._kv)


def _log_circuit(endpoint: str) -> Callable[[CircuitState], None]:
    """An ``on_change`` that logs endpoint ``endpoint``'s circuit changes at INFO."""

    def changed(state: CircuitState) -> None:
        log.info("endpoint %s circuit is now %s", endpoint, state)

    return changed


class Registry:
    def __init__(
        self, breaker_policy: CircuitBreaker, *, clock: Clock, staleness_s: float = 30.0
    ) -> None:
        self._policy = breaker_policy
        self._clock = clock
        self._staleness_s = staleness_s
        self.slots: dict[str, Slot] = {}
        self.draining: dict[str, Slot] = {}
        self.ring = affinity.Ring(())
        self.version = 0
        self.listeners: list[Callable[[], None]] = []
        # Called with each endpoint id that is gone for good (not routable, not
        # draining): what was learned about it is forgotten (its address may come back
        # as another pod).
        self.forgetters: list[Callable[[str], None]] = []

    def replace(self, endpoints: Iterable[Endpoint]) -> None:
        """Make ``endpoints`` the routable set, keeping the state of those that stay."""
        fresh: dict[str, Slot] = {}
        for endpoint in endpoints:
            old = self.slots.get(endpoint.id) or self.draining.pop(endpoint.id, None)
            if old is None:
                circuit = breaker.Breaker(self._policy, on_change=_log_circuit(endpoint.id))
                fresh[endpoint.id] = Slot(endpoint, circuit)
            else:
                old.endpoint = endpoint
                fresh[endpoint.id] = old
        for gone in set(self.slots) - set(fresh):
            self.draining[gone] = self.slots[gone]
        known = set(self.draining)
        self.draining = {k: s for k, s in self.draining.items() if s.in_flight > 0}
        for forgotten in sorted(known - set(self.draining)):
            for forget in self.forgetters:
                forget(forgotten)
        changed = set(fresh) != set(self.slots)
        self.slots = fresh
        if changed:
            self.ring = affinity.Ring(fresh)
            self.version += 1
            for listener in self.listeners:
                listener()

    def reconfigure(self, breaker_policy: CircuitBreaker, *, staleness_s: float) -> None:
        """New breaker settings and signal staleness; circuits keep their state."""
        self._policy, self._staleness_s = breaker_policy, staleness_s
        for slot in (*self.slots.values(), *self.draining.values()):
            slot.breaker.policy = breaker_policy

    def candidates(self) -> list[Candidate]:
        now = self._clock()
        return [self._candidate(slot, now) for slot in self.slots.values()]

    def _candidate(self, slot: Slot, now: float) -> Candidate:
        b = slot.breaker
        fresh = slot.signals_at is not None and now - slot.signals_at <= self._staleness_s
        return Candidate(
            slot.endpoint,
            Load(
                in_flight=slot.in_flight,
                pending_tokens=slot.pending_tokens,
                prefill_tokens=slot.prefill_tokens,
                kv_tokens=slot.kv_tokens,
                prefill_per_s=slot.prefill_rate.per_second(now),
                healthy=slot.healthy,
                circuit=b.state(now),
                probe_available=b.probe_available(now),
                signals=slot.signals if fresh else None,
                residents=tuple(slot.residents.values()),
                prompt_tokens_sent=slot.prompt_tokens_sent,
            ),
        )

    def lease(
        self,
        endpoint_id: str,
        cost: float,
        *,
        prefill: float = 0.0,
        kv: float = 0.0,
        tpot: tuple[float, int] | None = None,
    ) -> Lease:
        """Claim ``endpoint_id`` for a request of ``cost``, ``prefill`` prompt tokens and
        ``kv`` tokens of KV cache at its longest; ``tpot`` as ``Lease`` takes it."""
        slot = self.slots[endpoint_id]
        now = self._clock()
        probe = slot.breaker.on_attempt(now)
        slot.prefill_rate.add(prefill, now)
        return Lease(slot, cost, probe=probe, prefill=prefill, kv=kv, tpot=tpot)

    def slot(self, endpoint_id: str) -> Slot | None:
        return self.slots.get(endpoint_id) or self.draining.get(endpoint_id)

    def set_signals(self, signals: dict[str, Signals], at: float) -> None:
        for endpoint_id, value in signals.items():
            slot = self.slots.get(endpoint_id)
            if slot is not None:
                slot.signals, slot.signals_at = value, at

    def fresh_signals(self) -> int:
        now = self._clock()
        return sum(
            1
            for s in self.slots.values()
            if s.signals_at is not None and now - s.signals_at <= self._staleness_s
        )
