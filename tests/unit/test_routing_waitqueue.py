"""The admission queue's order, removal, shedding and wake-ups, over literal tickets;
and the indexed heap under it, against a sorted list."""

from __future__ import annotations

import random

import pytest

from gpufleet.routing import waitqueue
from gpufleet.routing.indexedheap import IndexedHeap

Waiting = waitqueue.Waiting


def _queue(pushes: list[tuple[int, str]], size: int = 100, order: str = "priority") -> tuple[
    waitqueue.WaitQueue, list[waitqueue.Ticket]
]:  # fmt: skip
    """A queue with one ticket per (priority, lane), pushed in order; none shed."""
    queue = waitqueue.WaitQueue(size, order)
    tickets = []
    for priority, lane in pushes:
        ticket, shed = queue.push(priority, 0.0, Waiting("p"), lane=lane)
        assert shed is None
        tickets.append(ticket)
    return queue, tickets


@pytest.mark.parametrize(
    ("order", "priorities", "expected"),
    [
        ("priority", [1, 5, 1, 5, 3], [1, 3, 4, 0, 2]),  # higher first, FIFO within
        ("priority", [0, 0, 0], [0, 1, 2]),
        ("priority", [-1, 0], [1, 0]),
        ("fifo", [1, 5, 1, 5, 3], [0, 1, 2, 3, 4]),  # arrival order only
    ],
)
def test_order(order: str, priorities: list[int], expected: list[int]) -> None:
    queue, tickets = _queue([(p, "m") for p in priorities], order=order)
    assert queue.in_order() == [tickets[i] for i in expected]
    assert queue.head() == tickets[expected[0]]
    assert queue.wake("m", len(tickets)) == [tickets[i] for i in expected]


@pytest.mark.parametrize(
    ("size", "pushes", "shed"),
    [
        (2, [1, 1, 1], [None, None, 2]),  # full of equal priority: the newcomer
        (2, [1, 1, 5], [None, None, 1]),  # the lowest priority's newest
        (2, [5, 1, 1], [None, None, 2]),
        (2, [1, 5, 9, 9], [None, None, 0, 1]),
        (3, [3, 1, 2, 0, 4], [None, None, None, 3, 1]),
        (1, [0, 1, 2], [None, 0, 1]),
        (0, [9, 9], [0, 1]),  # no queue: every newcomer
    ],
)
def test_shedding(size: int, pushes: list[int], shed: list[int | None]) -> None:
    queue = waitqueue.WaitQueue(size)
    tickets = []
    for priority, expected in zip(pushes, shed, strict=True):
        ticket, dropped = queue.push(priority, 0.0, Waiting("p"), lane="m")
        tickets.append(ticket)
        assert dropped == (None if expected is None else tickets[expected])
        assert dropped is None or dropped not in queue
    assert len(queue) == min(size, len(pushes))
    assert queue.demand() == ({"p": waitqueue.Demand(len(queue))} if len(queue) else {})
    assert queue.wake("m", size) == queue.in_order()


def test_a_smaller_bound_sheds_one_per_newcomer_only() -> None:
    queue, tickets = _queue([(1, "m")] * 4)
    queue.max_size = 2
    _, shed = queue.push(5, 0.0, lane="m")
    assert shed == tickets[3] and len(queue) == 4
    assert queue.push(0, 0.0, lane="m")[1] is not None  # the newcomer: lowest priority


@pytest.mark.parametrize(
    ("removed", "left"),
    [
        ([2], [0, 1, 3, 4]),  # from the middle
        ([0, 4], [1, 2, 3]),
        ([4, 3, 2, 1, 0], []),
        ([1, 1], [0, 2, 3, 4]),  # twice: the second is ignored
    ],
)
def test_removal(removed: list[int], left: list[int]) -> None:
    queue, tickets = _queue([(0, "m")] * 5)
    for index in removed:
        assert queue.remove(tickets[index]) == []
    assert queue.in_order() == [tickets[i] for i in left]
    assert len(queue) == len(left)
    assert queue.demand() == ({"p": waitqueue.Demand(len(left))} if left else {})
    assert queue.wake("m", 9) == [tickets[i] for i in left]


def test_removal_of_an_unknown_ticket_changes_nothing() -> None:
    queue, tickets = _queue([(0, "m")])
    stranger = waitqueue.Ticket((0, 99), 0, 0.0)
    assert queue.remove(stranger) == [] and queue.in_order() == tickets


@pytest.mark.parametrize(
    ("pushes", "freed", "woken"),
    [
        # (priority, lane) per ticket; (lane, slots) per freed call; tickets woken by each.
        ([(0, "a"), (0, "a"), (0, "a")], [("a", 1)], [[0]]),
        ([(0, "a"), (0, "a"), (0, "a")], [("a", 2), ("a", 2)], [[0, 1], [2]]),
        ([(0, "a"), (9, "a"), (5, "a")], [("a", 1), ("a", 1)], [[1], [2]]),
        # A slot of lane b wakes b's first, not the head of the queue in lane a.
        ([(9, "a"), (0, "b"), (0, "b")], [("b", 1), ("a", 1)], [[1], [0]]),
        ([(0, "a")], [("b", 1), ("a", 0)], [[], []]),
        ([], [("a", 3)], [[]]),
    ],
)
def test_a_freed_slot_wakes_one_waiter_of_its_lane_in_order(
    pushes: list[tuple[int, str]], freed: list[tuple[str, int]], woken: list[list[int]]
) -> None:
    queue, tickets = _queue(pushes)
    for (lane, slots), expected in zip(freed, woken, strict=True):
        got = queue.wake(lane, slots)
        assert got == [tickets[i] for i in expected]
        assert all(queue.woken(t) for t in got)


def test_a_woken_ticket_whose_slot_was_taken_keeps_its_place() -> None:
    queue, (first, _, _) = _queue([(0, "a")] * 3)
    assert queue.wake("a") == [first]
    assert queue.retry(first, Waiting("p"), room=0) == []  # another request took the slot
    assert not queue.woken(first)
    assert queue.wake("a") == [first]  # first again, not behind the others


def test_room_a_woken_ticket_cannot_use_goes_to_the_next() -> None:
    queue, (first, second, third) = _queue([(0, "a")] * 3)
    assert queue.wake("a") == [first]
    # It excludes the endpoint that freed up: the room is still there, for the next.
    assert queue.retry(first, Waiting("p"), room=1) == [second]
    assert queue.retry(second, Waiting("p"), room=1) == [third]
    assert queue.retry(third, Waiting("p"), room=1) == []  # no one left to offer it to
    assert queue.wake("a") == [first]  # a new slot: every deferred ticket may use it
    assert queue.wake("a", 5) == [second, third]


def test_room_other_woken_tickets_are_coming_for_is_theirs() -> None:
    queue, (first, second, third) = _queue([(0, "a")] * 3)
    assert queue.wake("a", 2) == [first, second]
    assert queue.retry(first, Waiting("p"), room=1) == []  # the room left is second's
    assert queue.wake("a") == [first]
    assert queue.retry(second, Waiting("p"), room=3) == [third]  # 3 free, 1 woken: 2 spare


@pytest.mark.parametrize(("served", "passed"), [(False, True), (True, False)])
def test_a_woken_ticket_that_leaves_without_an_endpoint_passes_its_wake_up_on(
    served: bool, passed: bool
) -> None:
    queue, (first, second) = _queue([(0, "a")] * 2)
    queue.wake("a")
    assert queue.remove(first, served=served) == ([second] if passed else [])
    assert queue.woken(second) is passed


def test_retry_of_a_ticket_not_woken_is_ignored() -> None:
    queue, (first,) = _queue([(0, "a")])
    assert queue.retry(first, Waiting("q", held=True), room=5) == []
    assert queue.waiting(first) == Waiting("p")
    queue.remove(first)
    assert queue.retry(first, Waiting("p"), room=5) == []


def test_wake_all_wakes_every_waiting_ticket_in_order() -> None:
    queue, tickets = _queue([(0, "a"), (5, "b"), (0, "a"), (1, "c")])
    queue.wake("a")
    assert queue.retry(tickets[0], Waiting("p"), room=1) == [tickets[2]]  # 0 deferred
    assert queue.wake_all() == [tickets[1], tickets[3], tickets[0]]
    assert queue.wake_all() == []  # all woken already


def test_retry_counts_what_the_ticket_now_waits_for() -> None:
    queue = waitqueue.WaitQueue(5)
    held, _ = queue.push(0, 0.0, Waiting("p", held=True), lane="m")
    assert queue.demand() == {"p": waitqueue.Demand(0, 1)}
    queue.wake_all()  # the pool got an endpoint, at once saturated
    queue.retry(held, Waiting("p"), room=0)
    assert queue.demand() == {"p": waitqueue.Demand(1, 0)}
    queue.remove(held)
    assert queue.demand() == {}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reverse", [False, True])
def test_indexed_heap_agrees_with_a_sorted_list(seed: int, reverse: bool) -> None:
    rng = random.Random(seed)
    heap: IndexedHeap[int] = IndexedHeap(reverse=reverse)
    kept: set[int] = set()
    for _ in range(2000):
        item = rng.randrange(300)
        if rng.random() < 0.5 and item not in kept:
            heap.push(item)
            kept.add(item)
        elif rng.random() < 0.5:
            assert heap.remove(item) == (item in kept)
            kept.discard(item)
        elif kept:
            assert heap.pop() == (max(kept) if reverse else min(kept))
            kept.discard(max(kept) if reverse else min(kept))
        assert len(heap) == len(kept) and sorted(heap) == sorted(kept)
        assert heap.peek() == ((max(kept) if reverse else min(kept)) if kept else None)


def test_indexed_heap_refuses_an_item_twice() -> None:
    heap: IndexedHeap[int] = IndexedHeap()
    heap.push(1)
    with pytest.raises(ValueError, match="already"):
        heap.push(1)
    assert heap.pop() == 1
    with pytest.raises(IndexError):
        heap.pop()
