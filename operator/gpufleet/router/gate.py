"""The admission queue's waiting side: requests wait here while every endpoint that
could serve them is at its request limit (queued), or while the pool that serves their
model has no ready endpoint at all, as when it scales from zero (held).

Order, shedding, demand and whom to wake are ``routing.waitqueue.WaitQueue``'s; this
module only parks coroutines on futures and resolves the ones the queue names. A lane
is the model a request waits for: ``freed`` (an endpoint of that model freed a slot)
wakes that many of its waiters, first first; ``wake_all`` (the endpoint set changed)
wakes everyone. A woken waiter that gets no endpoint calls ``retry`` and waits again
in its place. A waiter keeps its place until it gets an endpoint, times out (503 with
Retry-After) or is shed by a higher-priority arrival (429).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from gpufleet.router.errors import RateLimited, Unavailable
from gpufleet.routing import waitqueue


def _shed_error() -> RateLimited:
    return RateLimited("shed from the admission queue for higher priority", retry_after_s=1)


class Gate:
    def __init__(self, queue: waitqueue.WaitQueue, *, clock: Callable[[], float]) -> None:
        self._queue = queue
        self._clock = clock
        self._futures: dict[waitqueue.Ticket, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def reconfigure(self, max_size: int, order: str) -> None:
        """A new bound and order; waiting requests keep their place (a smaller bound
        sheds no one already queued, it only refuses newcomers until the queue shrinks)."""
        self._queue.max_size, self._queue.order = max_size, order

    def enter(
        self, priority: int, waiting: waitqueue.Waiting | None = None, *, lane: str = ""
    ) -> waitqueue.Ticket:
        """Queue a request waiting for ``waiting`` in ``lane``; ``RateLimited`` if the
        full queue sheds it at once."""
        ticket, shed = self._queue.push(priority, self._clock(), waiting, lane=lane)
        if shed is ticket:
            raise RateLimited("the admission queue is full", retry_after_s=1)
        if shed is not None:
            future = self._futures.pop(shed, None)
            if future is not None and not future.done():
                future.set_exception(_shed_error())
        return ticket

    async def wait(self, ticket: waitqueue.Ticket, deadline: float) -> None:
        """Until woken (at once when already woken); ``RateLimited`` when it was shed
        after it was woken, ``Unavailable`` past ``deadline`` (clock time)."""
        if ticket not in self._queue:
            raise _shed_error()
        if self._queue.woken(ticket):
            return
        future = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        try:
            await asyncio.wait_for(future, timeout=max(0.0, deadline - self._clock()))
        except TimeoutError:
            raise Unavailable(self._late(ticket), retry_after_s=1) from None
        finally:
            self._futures.pop(ticket, None)

    def _late(self, ticket: waitqueue.Ticket) -> str:
        waiting = self._queue.waiting(ticket)
        if waiting is not None and waiting.held:
            return (
                f"pool {waiting.pool} has no ready endpoint (it may be scaling from zero) "
                "and none became ready within the queue timeout"
            )
        return "no endpoint freed up within the queue timeout"

    def retry(self, ticket: waitqueue.Ticket, waiting: waitqueue.Waiting, *, room: int) -> None:
        """Woken ``ticket`` got no endpoint and now waits for ``waiting``; ``room`` is how
        many more requests its lane's endpoints take now (``WaitQueue.retry``)."""
        self._resolve(self._queue.retry(ticket, waiting, room=room))

    def demand(self) -> dict[str, waitqueue.Demand]:
        """Pool -> requests waiting for it now (only pools with some)."""
        return self._queue.demand()

    def leave(self, ticket: waitqueue.Ticket, *, served: bool) -> None:
        """``ticket`` is done waiting, ``served`` when it got an endpoint (a woken one
        that leaves without passes its wake-up on)."""
        self._futures.pop(ticket, None)
        self._resolve(self._queue.remove(ticket, served=served))

    def freed(self, lane: str, count: int = 1) -> None:
        """``count`` slots freed up on endpoints of ``lane``: wake that many waiters."""
        if len(self._queue):
            self._resolve(self._queue.wake(lane, count))

    def wake_all(self) -> None:
        """Let every waiter try again, in queue order (the endpoint set changed)."""
        self._resolve(self._queue.wake_all())

    def _resolve(self, tickets: Iterable[waitqueue.Ticket]) -> None:
        # A woken ticket without a future is between two waits; ``wait`` sees it woken.
        for ticket in tickets:
            future = self._futures.get(ticket)
            if future is not None and not future.done():
                future.set_result(None)
