"""The requests in flight, so that a stopping router can let them finish, and cut the
ones left when ``drainSeconds`` runs out.

Handlers ``enter`` and ``leave``; the app's prepare hook records each request's
response once its headers are sent (``prepared``). ``cut`` cancels what is left:
a handler that sees its cancellation while ``cutting`` ends the request itself —
503 JSON before the headers, an SSE error event after (``handlers``).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web


class Drain:
    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[object], web.StreamResponse | None] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.cutting = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def enter(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks[task] = None
            self._idle.clear()

    def leave(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.pop(task, None)
        if not self._tasks:
            self._idle.set()

    def prepared(self, response: web.StreamResponse) -> None:
        """Remember the response whose headers the current request just sent."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._tasks[task] = response

    def response(self) -> web.StreamResponse | None:
        """The current request's response, once its headers are sent."""
        task = asyncio.current_task()
        return self._tasks.get(task) if task is not None else None

    async def idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for nothing to be in flight; whether it came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._idle.wait()
        return self._idle.is_set()

    def cut(self) -> int:
        """Cancel every request still in flight; how many there were."""
        self.cutting = True
        for task in self._tasks:
            task.cancel()
        return len(self._tasks)
