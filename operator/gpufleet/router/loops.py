"""The router's background loops that keep endpoint state current.

- ``health_loop``: ``GET <healthCheck.path>`` on every endpoint and, where its pod has
  a GPU health agent, ``GET`` its verdict: an endpoint is healthy when its server
  answers 200 and its agent does not answer 503. An unhealthy endpoint gets no new
  requests while those in flight finish (a drain), until both agree again. An agent
  that cannot be reached, or answers anything else, does not drain: a monitoring fault
  must not take serving capacity away (the server's own check still applies);
- ``learning_loop``: in ``auto`` generation-weight mode, re-weighs endpoints from
  learned throughput (idle in other modes).

Each pass reads the router's current configuration, so a live change of interval,
path or mode applies from the next pass; ``pause`` ends a wait early when the
configuration changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from gpufleet.router import appkeys, discovery
from gpufleet.router.service import Router

log = logging.getLogger("gpufleet.router.discovery")
LEARNING_INTERVAL_S = 5.0


async def pause(router: Router, seconds: float) -> None:
    """Sleep ``seconds``, or less when a new configuration is applied meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(router.reconfigured.wait(), seconds)


async def health_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    while True:
        check = router.config.health_check
        limit = aiohttp.ClientTimeout(total=check.timeout_seconds)
        slots = list(router.registry.slots.values())
        http = appkeys.http(app)
        servers = asyncio.gather(*(_probe(http, s.endpoint.id + check.path, limit) for s in slots))
        gpus = asyncio.gather(*(_gpu_verdict(http, s.endpoint.gpu_health_url, limit)
                                for s in slots))  # fmt: skip
        for slot, server_ok, gpu_ok in zip(slots, await servers, await gpus, strict=True):
            ok = server_ok and gpu_ok
            if slot.healthy != ok:
                why = "" if ok else (" (its GPU health agent says unhealthy: draining)"
                                     if server_ok else " (its /health check failed)")  # fmt: skip
                log.info("endpoint %s is now %s%s", slot.endpoint.id,
                         "healthy" if ok else "unhealthy", why)  # fmt: skip
            slot.healthy = ok
        await pause(router, check.interval_seconds)


async def _probe(http: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout) -> bool:
    try:
        async with http.get(url, timeout=limit) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _gpu_verdict(http: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout) -> bool:
    """False only when the pod's GPU health agent answers 503 (its GPUs are unhealthy)."""
    if not url:
        return True
    try:
        async with http.get(url, timeout=limit) as response:
            return response.status != 503
    except (aiohttp.ClientError, OSError, TimeoutError):
        return True


async def learning_loop(app: web.Application) -> None:
    """Re-weight endpoints from learned throughput every few seconds (``auto`` mode)."""
    router = app[appkeys.ROUTER]
    while True:
        await asyncio.sleep(LEARNING_INTERVAL_S)
        if router.config.policy.generation_weights.mode != "auto":
            continue
        endpoints = [s.endpoint for s in router.registry.slots.values()]
        router.registry.replace(discovery.weigh(router.config, router.learner, endpoints))
