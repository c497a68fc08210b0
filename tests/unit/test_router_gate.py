"""The gate on a real event loop: waiters of one model behind endpoints with a count of
free slots, as the router's queued requests are. Each freed slot makes one waiter try,
the first in line; a woken waiter whose slot another request took stays first; one
that leaves without trying hands its wake-up on; none is lost."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from gpufleet.router.errors import RateLimited
from gpufleet.router.gate import Gate
from gpufleet.routing import waitqueue

QUEUED = waitqueue.Waiting("p")


@dataclasses.dataclass
class Lane:
    """One model's endpoints as the waiters see them: free slots, and who tried and
    who got one, in order."""

    gate: Gate
    free: int = 0
    tried: list[str] = dataclasses.field(default_factory=list)
    served: list[str] = dataclasses.field(default_factory=list)

    async def waiter(self, name: str, priority: int, *, gives_up: bool = False) -> None:
        """What ``pipeline._queued`` does, with taking a free slot as the pick;
        ``gives_up``: it leaves once woken, as a request refused then does."""
        ticket = self.gate.enter(priority, QUEUED, lane="m")
        got = False
        try:
            while True:
                await self.gate.wait(ticket, time.monotonic() + 30)
                self.tried.append(name)
                if gives_up:
                    return
                if self.free > 0:
                    self.free, got = self.free - 1, True
                    self.served.append(name)
                    return
                self.gate.retry(ticket, QUEUED, room=self.free)
        finally:
            self.gate.leave(ticket, served=got)

    def freed(self, slots: int) -> None:
        self.free += slots
        self.gate.freed("m", slots)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _lane(priorities: dict[str, int]) -> tuple[Lane, dict[str, asyncio.Task[None]]]:
    lane = Lane(Gate(waitqueue.WaitQueue(100), clock=time.monotonic))
    tasks = {n: asyncio.create_task(lane.waiter(n, p)) for n, p in priorities.items()}
    await _settle()
    return lane, tasks


@pytest.mark.parametrize(
    ("frees", "served"),
    [
        ([1], ["hi"]),
        ([2], ["hi", "mid"]),
        ([1, 1, 1, 1], ["hi", "mid", "lo1", "lo2"]),
        ([3, 1], ["hi", "mid", "lo1", "lo2"]),
        ([9], ["hi", "mid", "lo1", "lo2"]),
    ],
)
async def test_each_freed_slot_makes_one_waiter_try_in_priority_order(
    frees: list[int], served: list[str]
) -> None:
    lane, tasks = await _lane({"lo1": 0, "hi": 9, "lo2": 0, "mid": 5})
    for slots in frees:
        lane.freed(slots)
        await _settle()
    assert lane.served == served
    assert lane.tried == served  # no one woke to find nothing
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_waiter_whose_slot_was_taken_is_first_for_the_next() -> None:
    lane, tasks = await _lane({"first": 0, "second": 0})
    lane.freed(1)
    lane.free -= 1  # a newcomer takes the slot before the woken waiter runs
    await _settle()
    assert (lane.tried, lane.served) == (["first"], [])
    lane.freed(1)
    await _settle()
    assert (lane.tried, lane.served) == (["first", "first"], ["first"])
    tasks["second"].cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_woken_waiter_that_leaves_without_a_slot_hands_its_wake_up_on() -> None:
    lane = Lane(Gate(waitqueue.WaitQueue(100), clock=time.monotonic))
    quitter = asyncio.create_task(lane.waiter("quitter", 9, gives_up=True))
    second = asyncio.create_task(lane.waiter("second", 0))
    await _settle()
    lane.freed(1)
    await _settle()
    assert (lane.tried, lane.served) == (["quitter", "second"], ["second"])
    await asyncio.gather(quitter, second)


async def test_a_waiter_shed_after_it_was_woken_hears_so_at_its_next_wait() -> None:
    gate = Gate(waitqueue.WaitQueue(1), clock=time.monotonic)
    ticket = gate.enter(0, QUEUED, lane="m")
    gate.freed("m")
    gate.enter(5, QUEUED, lane="m")  # sheds the woken one
    with pytest.raises(RateLimited, match="shed"):
        await gate.wait(ticket, time.monotonic() + 30)
