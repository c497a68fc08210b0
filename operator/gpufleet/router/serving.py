"""Serving the router app until told to stop, then draining it within ``drainSeconds``.

On SIGTERM or SIGINT the router is marked draining at once — ``/readyz`` answers 503
while the listener stays open, so the orchestrator sees it and requests in flight go
on — and responses close their connections. When nothing is in flight, or when
``drainSeconds`` less a short grace has passed, the listener closes; requests still in
flight are then cut (``Drain.cut``): a stream ends with an SSE error event, a request
not yet answered gets a 503. The whole stop, cleanup included, takes about
``drainSeconds`` at most (aiohttp's own shutdown would wait for it twice and then cut
streams without a word).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gpufleet.router import appkeys

log = logging.getLogger("gpufleet.router")
# Time kept back from drainSeconds for cut requests to write their last event and for
# the app's cleanup; at most a quarter of the bound.
GRACE_S = 0.5


def grace(drain_s: float) -> float:
    return min(GRACE_S, drain_s / 4)


async def serve(application: web.Application, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then drain."""
    drain_s = application[appkeys.ROUTER].config.drain_seconds
    runner = web.AppRunner(
        application,
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=grace(drain_s) / 2,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"gpufleet router: serving on http://{host}:{port}", flush=True)
    await stop.wait()
    await drain(application, runner, drain_s)


async def drain(application: web.Application, runner: web.AppRunner, drain_s: float) -> None:
    """Let requests in flight finish within ``drain_s``, cut the rest, clean up."""
    application[appkeys.ROUTER].draining = True
    in_flight = application[appkeys.DRAIN]
    log.warning("draining: %d requests in flight, up to %ss", in_flight.in_flight, drain_s)
    finished = await in_flight.idle(drain_s - grace(drain_s))
    for site in list(runner.sites):
        await site.stop()
    if not finished:
        log.warning("drainSeconds ran out: cutting %d requests", in_flight.cut())
        await in_flight.idle(grace(drain_s) / 2)
    await runner.cleanup()
