"""The agent's HTTP side and its read loop (aiohttp).

``create_app(settings, open_source)`` builds the app; its ``cleanup_ctx`` runs the read
loop, which opens the source (retrying every interval while it cannot: a driver not yet
loaded is not fatal), reads it every ``interval`` seconds in a worker thread, keeps the
critical XID events within the hold time and judges the GPUs.

With ``gpu_uuids_file`` (as the operator renders it) only the pod's GPUs are judged and
exported: those the model server listed in that file (``gpufleet.podgpus``), not
every GPU of the node NVML shows the agent. Until the file exists nothing is judged; a
GPU it lists that the source does not show is a read error (the agent cannot see what
it should judge).

- ``GET /health``: the verdict — 200 ``{"healthy": true, …}``, or 503 with
  ``"healthy": false`` and the reasons. While the GPUs cannot be read, or the pod's are
  not known yet, it answers 200 with ``"healthy": null`` and the error: an unknown state
  does not drain the pod (a monitoring fault must not take serving capacity away); the
  read errors are counted in ``/metrics`` for alerts.
- ``GET /healthz``: 200 while the process serves (liveness).
- ``GET /metrics``: ``gpufleet.gpuagent.exporter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpufleet import podgpus
from gpufleet.gpuagent import exporter, scope, verdict
from gpufleet.gpuagent.readings import GpuReading, GpuSource, Snapshot, SourceError, XidEvent

log = logging.getLogger("gpufleet.gpuagent")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSettings:
    interval_seconds: float = 2.0
    hostname: str = ""
    limits: verdict.Thresholds = dataclasses.field(default_factory=verdict.Thresholds)
    # The model server's list of the pod's GPUs (``scope``); None judges every GPU read.
    gpu_uuids_file: Path | None = None


@dataclasses.dataclass(slots=True)
class AgentState:
    """What the loop last read and judged; mutated only by the loop."""

    settings: AgentSettings
    gpus: tuple[GpuReading, ...] = ()
    xids: list[XidEvent] = dataclasses.field(default_factory=list)
    last_xid: dict[str, int] = dataclasses.field(default_factory=dict)
    verdict: verdict.Verdict | None = None
    error: str = ""
    read_errors: int = 0
    read_at: float = 0.0

    def _keep_xids(self, xids: tuple[XidEvent, ...], now: float) -> None:
        self.last_xid |= {e.gpu_uuid: e.xid for e in xids}
        self.xids = verdict.keep_recent([*self.xids, *xids], now=now, limits=self.settings.limits)

    def record(
        self,
        gpus: tuple[GpuReading, ...],
        xids: tuple[XidEvent, ...],
        now: float,
        *,
        pod_gpus: frozenset[str] | None = None,
    ) -> None:
        """Take one successful read and judge ``gpus`` (already only the pod's when
        scoped: ``scope.scoped``). Every XID event read is kept, since the pod's list may
        come later; with ``pod_gpus`` only those GPUs' events are judged."""
        self._keep_xids(xids, now)
        self.gpus = tuple(
            dataclasses.replace(g, last_xid=self.last_xid.get(g.uuid, 0)) for g in gpus
        )
        events = self.xids if pod_gpus is None else [e for e in self.xids if e.gpu_uuid in pod_gpus]
        self.verdict = verdict.judge(self.gpus, events, now=now, limits=self.settings.limits)
        self.error, self.read_at = "", now

    def waiting(self, xids: tuple[XidEvent, ...], now: float, message: str) -> None:
        """A read that cannot be judged yet (the pod's GPUs unknown): its XID events are
        kept for when they are known; nothing is judged or exported."""
        self._keep_xids(xids, now)
        self.gpus, self.verdict, self.error = (), None, message

    def failed(self, message: str) -> None:
        self.read_errors += 1
        self.error = message
        self.verdict = None


STATE: web.AppKey[AgentState] = web.AppKey("gpu_agent_state", AgentState)
OpenSource = Callable[[], GpuSource]


def create_app(
    settings: AgentSettings, open_source: OpenSource, *, clock: Callable[[], float] = time.time
) -> web.Application:
    app = web.Application()
    state = AgentState(settings)
    app[STATE] = state

    async def loop(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_read_loop(state, open_source, clock))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    collector = exporter.AgentCollector(
        hostname=settings.hostname, read=lambda: (state.gpus, state.verdict, state.read_errors)
    )
    registry = exporter.registry(collector)

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.cleanup_ctx.append(loop)
    app.router.add_get("/health", _health)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def _read_loop(
    state: AgentState, open_source: OpenSource, clock: Callable[[], float]
) -> None:
    source: GpuSource | None = None
    try:
        while True:
            try:
                if source is None:
                    source = await asyncio.to_thread(open_source)
                snapshot = await asyncio.to_thread(source.read)
            except SourceError as exc:
                if not state.error:
                    log.warning("cannot read the GPUs: %s", exc)
                state.failed(str(exc))
            else:
                was, told = (state.verdict.healthy if state.verdict else None), state.error
                take(state, snapshot, clock())  # the list is a few bytes in memory
                if state.verdict is None and state.error != told:
                    log.info("not judging: %s", state.error)
                if state.verdict is not None and state.verdict.healthy != was:
                    log.info("GPUs %s: %s", "healthy" if state.verdict.healthy else "UNHEALTHY",
                             "; ".join(state.verdict.reasons) or "all within limits")  # fmt: skip
            await asyncio.sleep(state.settings.interval_seconds)
    finally:
        if source is not None:
            source.close()


def take(state: AgentState, snapshot: Snapshot, now: float) -> None:
    """Judge ``snapshot``: all of it, or — with a UUID file — the pod's GPUs once listed."""
    path = state.settings.gpu_uuids_file
    if path is None:
        state.record(snapshot.gpus, snapshot.xids, now)
        return
    try:
        pod_gpus = podgpus.read(path)
    except OSError as exc:
        state.waiting(snapshot.xids, now, f"cannot read the pod's GPU list {path}: {exc}")
        state.read_errors += 1
        return
    if pod_gpus is None:
        state.waiting(snapshot.xids, now, f"waiting for the model server to list its GPUs in "
                                          f"{path} (gpufleet worker writes it)")  # fmt: skip
        return
    found = scope.scoped(snapshot, pod_gpus)
    if found.missing:
        state.waiting(snapshot.xids, now, f"{path} lists GPU(s) this agent cannot read: "
                                          + ", ".join(found.missing))  # fmt: skip
        state.read_errors += 1
        return
    state.record(found.gpus, snapshot.xids, now, pod_gpus=pod_gpus)


def health_body(state: AgentState) -> tuple[int, dict[str, object]]:
    """The status and JSON of ``GET /health``."""
    found = state.verdict
    if found is None:
        return 200, {"healthy": None, "error": state.error or "no read yet", "gpus": 0}
    body: dict[str, object] = {
        "healthy": found.healthy,
        "reasons": list(found.reasons),
        "gpus": found.gpus,
        "readAt": state.read_at,
    }
    return (200 if found.healthy else 503), body


async def _health(request: web.Request) -> web.Response:
    status, body = health_body(request.app[STATE])
    return web.json_response(body, status=status)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")
