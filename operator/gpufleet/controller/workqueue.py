"""A de-duplicating, delaying work queue of pool keys, as in client-go's workqueue.

Asyncio only, no Kubernetes. A key is queued at most once however many events name it;
a key being worked on is never handed to a second worker — if it is added meanwhile it
is marked dirty and queued again when the first worker calls ``done``. So each pool is
reconciled by one worker at a time, and a burst of pod events costs one reconcile.
``add_after`` re-adds a key later (retries, resyncs); an earlier pending re-add wins.
"""

from __future__ import annotations

import asyncio

# (namespace, name) of a ModelPool.
Key = tuple[str, str]


class WorkQueue:
    """Keys waiting to be reconciled; ``get`` blocks until one is."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._later: dict[Key, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        pending = self._later.get(key)
        due = loop.time() + delay
        if pending is not None and not pending.cancelled() and pending.when() <= due:
            return
        if pending is not None:
            pending.cancel()
        self._later[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._later.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._ready.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: Key) -> None:
        """Drop a pending delayed re-add (the pool is gone)."""
        pending = self._later.pop(key, None)
        if pending is not None:
            pending.cancel()

    def close(self) -> None:
        for pending in self._later.values():
            pending.cancel()
        self._later.clear()
