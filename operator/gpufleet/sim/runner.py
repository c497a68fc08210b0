"""Drives the pure engine in real time and hands tokens to waiting HTTP handlers.

One loop per replica: take a step, sleep its simulated duration / ``speed`` (times the
fault slowdown), then deliver the step's tokens — so a token is never seen before the
step that made it would have finished on the GPU. Requests arriving during a step join
the next one, as in vLLM. With nothing to do the loop waits on an event and costs no
CPU. Latency metrics are observed here, in wall-clock seconds, so they match what the
clients see (at ``speed`` 10 a simulated 1 s TTFT shows as 0.1 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from gpufleet.sim.engine import Engine, Request, StepResult, TokenEvent
from gpufleet.sim.metrics import VllmMetrics

Clock = Callable[[], float]


@dataclasses.dataclass(slots=True)
class _Pending:
    queue: asyncio.Queue[TokenEvent]
    arrival: float
    last: float | None = None


class Runner:
    """The real-time shell around one ``Engine``."""

    def __init__(
        self,
        engine: Engine,
        metrics: VllmMetrics,
        *,
        speed: float = 1.0,
        slowdown: Callable[[], float] = lambda: 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.engine = engine
        self.metrics = metrics
        self.speed = speed
        self._slowdown = slowdown
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._busy_s = 0.0
        self._busy_mark = (clock(), 0.0)
        self.steps = 0

    def submit(self, request: Request) -> asyncio.Queue[TokenEvent]:
        """Queue ``request``; its tokens arrive on the returned queue. ``ValueError`` if
        the engine can never fit it."""
        self.engine.add(request)
        queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._pending[request.request_id] = _Pending(queue, self._clock())
        self._wake.set()
        self._publish()
        return queue

    def cancel(self, request_id: str) -> None:
        """Forget a request whose client went away."""
        if self._pending.pop(request_id, None) is not None:
            self.engine.abort(request_id)
            self._publish()

    def utilization(self) -> float:
        """Share of wall time spent in steps since the previous call (DCGM's window)."""
        now = self._clock()
        since, busy_before = self._busy_mark
        self._busy_mark = (now, self._busy_s)
        elapsed = now - since
        return 0.0 if elapsed <= 0 else min(1.0, (self._busy_s - busy_before) / elapsed)

    async def run(self) -> None:
        """Step forever; cancelled by the app's cleanup."""
        while True:
            if not self.engine.has_work:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = self._clock()
            result = self.engine.step()
            delay = result.duration * self._slowdown() / self.speed
            await asyncio.sleep(max(0.0, started + delay - self._clock()))
            self._busy_s += delay
            self.steps += 1
            self._deliver(result)

    def _deliver(self, result: StepResult) -> None:
        now = self._clock()
        for event in result.events:
            pending = self._pending.get(event.request_id)
            if pending is None:
                continue
            if pending.last is None:
                self.metrics.first_token(now - pending.arrival)
            else:
                self.metrics.inter_token(now - pending.last)
            pending.last = now
            pending.queue.put_nowait(event)
            if event.finish_reason is not None:
                del self._pending[event.request_id]
                self.metrics.finished(e2e_s=now - pending.arrival, reason=event.finish_reason)
        self._publish()

    def _publish(self) -> None:
        engine = self.engine
        self.metrics.update(
            running=engine.num_running,
            waiting=engine.num_waiting,
            kv_usage=engine.kv_usage,
            counters=engine.counters,
        )
