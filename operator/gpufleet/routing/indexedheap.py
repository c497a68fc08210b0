"""A binary heap that knows where each of its items is, so any item — not only the
first — leaves in O(log n) and nothing is left behind: no tombstones to skip, no scan.

``heapq`` can only pop the first item; removing another means a linear search (or
marking it dead and skipping it later, which keeps dead items until they surface). The
admission queue removes from the middle all the time (a waiter that times out, is
cancelled, is shed or is woken), so it keeps its tickets here instead.

Items are distinct, hashable and ordered by their own ``<``; ``reverse`` puts the
largest first. An item's order must not change while it is in the heap.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class _Ordered(Hashable, Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


class IndexedHeap(Generic[T]):
    """Push, remove and pop in O(log n); peek, ``len`` and ``in`` in O(1)."""

    __slots__ = ("_at", "_items", "_reverse")

    def __init__(self, *, reverse: bool = False) -> None:
        self._items: list[T] = []
        self._at: dict[T, int] = {}
        self._reverse = reverse

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._at

    def __iter__(self) -> Iterator[T]:
        """Every item, in no particular order."""
        return iter(self._items)

    def peek(self) -> T | None:
        """The first item (the smallest; the largest with ``reverse``), or None."""
        return self._items[0] if self._items else None

    def push(self, item: T) -> None:
        """Add ``item``; ``ValueError`` if it is already here."""
        if item in self._at:
            raise ValueError("the item is already in the heap")
        self._items.append(item)
        self._at[item] = len(self._items) - 1
        self._up(len(self._items) - 1)

    def pop(self) -> T:
        """Take the first item out; ``IndexError`` when empty."""
        first = self._items[0]
        self.remove(first)
        return first

    def remove(self, item: T) -> bool:
        """Take ``item`` out; False (and nothing changes) when it is not here."""
        index = self._at.pop(item, None)
        if index is None:
            return False
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._at[last] = index
            self._down(self._up(index))
        return True

    def _before(self, a: T, b: T) -> bool:
        return b < a if self._reverse else a < b

    def _up(self, index: int) -> int:
        """Sift the item at ``index`` towards the root; returns where it stopped."""
        items = self._items
        while index:
            parent = (index - 1) // 2
            if not self._before(items[index], items[parent]):
                break
            self._swap(index, parent)
            index = parent
        return index

    def _down(self, index: int) -> None:
        items, size = self._items, len(self._items)
        while True:
            first, child = index, 2 * index + 1
            for candidate in (child, child + 1):
                if candidate < size and self._before(items[candidate], items[first]):
                    first = candidate
            if first == index:
                return
            self._swap(index, first)
            index = first

    def _swap(self, i: int, j: int) -> None:
        items = self._items
        items[i], items[j] = items[j], items[i]
        self._at[items[i]], self._at[items[j]] = i, j
