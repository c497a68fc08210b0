"""The admission queue's waiting side: requests wait here while every endpoint that
could serve them is at its request limit (queued), or while the pool that serves their
model has no ready endpoint at all, as when it scales from zero (held).

Order, shedding and the demand per pool are ``routing.admission.WaitQueue``'s; this
module only parks coroutines on futures. ``wake`` (called whenever an endpoint frees a
slot, and whenever discovery changes the endpoint set) lets every waiter try again in
queue order, so one whose model has a free endpoint is not held behind a head whose
model is saturated; a waiter keeps its place until it gets an endpoint, times out (503
with Retry-After) or is shed by a higher-priority arrival (429).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gpufleet.router.errors import RateLimited, Unavailable
from gpufleet.routing import admission


class Gate:
    def __init__(self, queue: admission.WaitQueue, *, clock: Callable[[], float]) -> None:
        self._queue = queue
        self._clock = clock
        self._futures: dict[admission.Ticket, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def reconfigure(self, max_size: int, order: str) -> None:
        """A new bound and order; waiting requests keep their place (a smaller bound
        sheds no one already queued, it only refuses newcomers until the queue shrinks)."""
        self._queue.max_size, self._queue.order = max_size, order

    def enter(self, priority: int, waiting: admission.Waiting | None = None) -> admission.Ticket:
        """Queue a request waiting for ``waiting``; ``RateLimited`` if the full queue
        sheds it at once."""
        ticket, shed = self._queue.push(priority, self._clock(), waiting)
        if shed is ticket:
            raise RateLimited("the admission queue is full", retry_after_s=1)
        if shed is not None:
            future = self._futures.pop(shed, None)
            if future is not None and not future.done():
                future.set_exception(
                    RateLimited(
                        "shed from the admission queue for higher priority", retry_after_s=1
                    )
                )
        return ticket

    async def wait(self, ticket: admission.Ticket, deadline: float) -> None:
        """Until woken; ``Unavailable`` past ``deadline`` (clock time)."""
        future = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        try:
            await asyncio.wait_for(future, timeout=max(0.0, deadline - self._clock()))
        except TimeoutError:
            raise Unavailable(self._late(ticket), retry_after_s=1) from None
        finally:
            self._futures.pop(ticket, None)

    def _late(self, ticket: admission.Ticket) -> str:
        waiting = self._queue.waiting(ticket)
        if waiting is not None and waiting.held:
            return (
                f"pool {waiting.pool} has no ready endpoint (it may be scaling from zero) "
                "and none became ready within the queue timeout"
            )
        return "no endpoint freed up within the queue timeout"

    def mark(self, ticket: admission.Ticket, waiting: admission.Waiting) -> None:
        """``ticket`` now waits for ``waiting`` (held -> queued, or back)."""
        self._queue.wait_for(ticket, waiting)

    def demand(self) -> dict[str, admission.Demand]:
        """Pool -> requests waiting for it now (only pools with some)."""
        return self._queue.demand()

    def leave(self, ticket: admission.Ticket) -> None:
        self._queue.remove(ticket)
        self._futures.pop(ticket, None)
        self.wake()

    def wake(self) -> None:
        """Let every waiter try again, in queue order.

        Waiters may want different models (or exclude different endpoints), so the
        head may be unable to use what freed up while one behind it can. They resume in
        the order they are woken and each picks (and leases) without yielding, so when
        several want the same endpoint the first in the queue gets it.
        """
        for ticket in self._queue.in_order():
            future = self._futures.get(ticket)
            if future is not None and not future.done():
                future.set_result(None)
