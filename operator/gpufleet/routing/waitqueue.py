"""The admission queue's order: which waiting request is shed when it is full, and
which are woken when an endpoint frees a slot. Pure; the router parks coroutines on it
(``gpufleet.router.gate``).

A ``Ticket`` sorts by priority (higher first; all equal with ``order`` "fifo"), then by
arrival. When the queue is full the lowest-priority newest ticket is shed — possibly
the newcomer. Each ticket waits in a *lane*: the requests one freed slot can serve (the
router's lane is the served model), so a slot freed on one model's endpoint wakes a
waiter of that model, never a waiter of another that would only find its own endpoints
still full. Within a lane a ticket is

- **parked**: waiting its turn;
- **woken**: told to try for an endpoint, and not back yet;
- **deferred**: it woke, failed, and the lane had room it could not use (it excludes
  the endpoint that freed up, or that endpoint is not of the generation it needs):
  passed over until the lane frees a slot again, so the room goes to those behind it
  instead of waking it again and again for room it cannot take.

``wake(lane, n)`` wakes the first n parked tickets of a lane: as many waiters as slots
freed, in order. No wake-up is lost: a woken ticket that fails when the lane has no room
left (another request took the slot) goes back to its own place, first in line for the
next slot; one that fails while room is left that others woken are not already coming
for is deferred and the room is offered to the next; one that leaves without an
endpoint (timed out, cancelled, refused) passes its wake-up on. Push, removal and each wake-up are
O(log n) in the tickets waiting (``IndexedHeap``: nothing is kept after it leaves).

A ticket also records what it waits for (``Waiting``: a pool, held or queued), which
adds up to the demand per pool (``Demand``) the autoscaler reads.
"""

from __future__ import annotations

import dataclasses
import itertools

from gpufleet.routing.indexedheap import IndexedHeap


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
class _Lane:
    """One lane's tickets by state (see the module docstring); each ticket in one."""

    parked: IndexedHeap[Ticket] = dataclasses.field(default_factory=IndexedHeap)
    woken: set[Ticket] = dataclasses.field(default_factory=set)
    deferred: set[Ticket] = dataclasses.field(default_factory=set)

    def __len__(self) -> int:
        return len(self.parked) + len(self.woken) + len(self.deferred)

    def wake(self, count: int) -> list[Ticket]:
        """Up to ``count`` parked tickets, first first, now woken."""
        woken = [self.parked.pop() for _ in range(min(count, len(self.parked)))]
        self.woken.update(woken)
        return woken

    def unpark_deferred(self) -> None:
        for ticket in self.deferred:
            self.parked.push(ticket)
        self.deferred.clear()

    def discard(self, ticket: Ticket) -> bool:
        """Drop ``ticket``; whether it was woken."""
        self.parked.remove(ticket)
        self.deferred.discard(ticket)
        woken = ticket in self.woken
        self.woken.discard(ticket)
        return woken


@dataclasses.dataclass(slots=True)
class WaitQueue:
    """Bounded queue of tickets; ``order`` "priority" or "fifo"."""

    max_size: int
    order: str = "priority"
    _seq: itertools.count[int] = dataclasses.field(default_factory=itertools.count)
    # Every ticket, the one to shed first first.
    _worst: IndexedHeap[Ticket] = dataclasses.field(
        default_factory=lambda: IndexedHeap(reverse=True)
    )
    _lanes: dict[str, _Lane] = dataclasses.field(default_factory=dict)
    _lane_of: dict[Ticket, str] = dataclasses.field(default_factory=dict)
    _waiting: dict[Ticket, Waiting] = dataclasses.field(default_factory=dict)
    # Pool -> [queued, held] tickets waiting for it.
    _demand: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def push(
        self, priority: int, now: float, waiting: Waiting | None = None, *, lane: str = ""
    ) -> tuple[Ticket, Ticket | None]:
        """Park a ticket in ``lane`` waiting for ``waiting`` (counted in ``demand``); the
        second value is the ticket shed to make room (may be the new one itself, when
        the queue is full of equal or higher priority). Held and queued tickets share
        the bound."""
        rank = -priority if self.order == "priority" else 0
        ticket = Ticket((rank, next(self._seq)), priority, now)
        worst = self._worst.peek()
        full = len(self) >= self.max_size
        if full and (worst is None or worst < ticket):
            return ticket, ticket
        if full and worst is not None:
            # A woken ticket shed here still tries for the slot it was woken for.
            self.remove(worst)
        self._worst.push(ticket)
        self._lane_of[ticket] = lane
        self._lanes.setdefault(lane, _Lane()).parked.push(ticket)
        if waiting is not None:
            self.wait_for(ticket, waiting)
        return ticket, worst if full else None

    def remove(self, ticket: Ticket, *, served: bool = True) -> list[Ticket]:
        """Drop ``ticket`` (served, timed out, cancelled or shed; unknown tickets are
        ignored). Returns the tickets to wake in its stead: the next of its lane when it
        had been woken and leaves without being ``served`` (the slot it was woken for
        is still free)."""
        name = self._lane_of.pop(ticket, None)
        if name is None:
            return []
        self._worst.remove(ticket)
        self.wait_for(ticket, None)
        lane = self._lanes[name]
        passed = lane.wake(1) if lane.discard(ticket) and not served else []
        if not lane:
            del self._lanes[name]
        return passed

    def wake(self, lane: str, count: int = 1) -> list[Ticket]:
        """``count`` slots freed for ``lane``: the tickets to wake, first first (its
        deferred tickets are parked again: this may be room they can use)."""
        found = self._lanes.get(lane)
        if found is None:
            return []
        found.unpark_deferred()
        return found.wake(count)

    def wake_all(self) -> list[Ticket]:
        """Every parked and deferred ticket, first first, now woken (the endpoint set
        changed: any of them may have room now)."""
        woken = [t for name in self._lanes for t in self.wake(name, len(self._lanes[name]))]
        return sorted(woken)

    def retry(self, ticket: Ticket, waiting: Waiting, *, room: int) -> list[Ticket]:
        """Woken ``ticket`` got no endpoint and waits again, for ``waiting``; ``room`` is
        how many more requests its lane's endpoints take now. Returns the tickets to
        wake: when there is more room than the other woken tickets will take, ``ticket``
        could not use it and is deferred, and that room goes to the next; otherwise
        (the slot it was woken for was taken) it goes back to its place."""
        name = self._lane_of.get(ticket)
        lane = self._lanes.get(name) if name is not None else None
        if lane is None or ticket not in lane.woken:
            return []
        self.wait_for(ticket, waiting)
        lane.woken.discard(ticket)
        spare = room - len(lane.woken)
        if spare <= 0:
            lane.parked.push(ticket)
            return []
        lane.deferred.add(ticket)
        return lane.wake(spare)

    def woken(self, ticket: Ticket) -> bool:
        """Whether ``ticket`` is woken (told to try, and not back yet)."""
        name = self._lane_of.get(ticket)
        return name is not None and ticket in self._lanes[name].woken

    def head(self) -> Ticket | None:
        """The ticket to serve first, or None (a scan: for inspection, not routing)."""
        return min(self._lane_of, default=None)

    def in_order(self) -> list[Ticket]:
        """Every waiting ticket, the one to serve first first (sorts them all)."""
        return sorted(self._lane_of)

    def wait_for(self, ticket: Ticket, waiting: Waiting | None) -> None:
        """``ticket`` now waits for ``waiting`` (a held request whose pool got endpoints
        that are all saturated is queued from then on; None: for nothing counted);
        unknown tickets are ignored."""
        if waiting is not None and ticket not in self._lane_of:
            return
        self._count(self._waiting.pop(ticket, None), -1)
        if waiting is not None:
            self._waiting[ticket] = waiting
            self._count(waiting, 1)

    def _count(self, waiting: Waiting | None, delta: int) -> None:
        if waiting is None:
            return
        counts = self._demand.setdefault(waiting.pool, [0, 0])
        counts[waiting.held] += delta
        if not any(counts):
            del self._demand[waiting.pool]

    def waiting(self, ticket: Ticket) -> Waiting | None:
        return self._waiting.get(ticket)

    def demand(self) -> dict[str, Demand]:
        """Pool -> its requests waiting now, held and queued; only pools with some."""
        return {pool: Demand(*counts) for pool, counts in sorted(self._demand.items())}

    def __len__(self) -> int:
        return len(self._lane_of)

    def __contains__(self, ticket: object) -> bool:
        return ticket in self._lane_of
