"""The router's app factory.

``create_app(config)`` builds every component once and wires the routes; its
``cleanup_ctx`` opens the upstream client session and runs the background loops —
health probes, Prometheus signals, throughput learning and, with ``kubernetes``, the
cluster watches that discover endpoints and apply configuration changes live — and
cancels them on shutdown. The loops read the current configuration on every pass, so
they run whether or not it enables them now. ``on_shutdown`` marks the router draining
(``/readyz`` 503); ``gpufleet router`` marks it earlier, as soon as it is told to stop
(``serving``). Every request passes ``edge``'s middlewares and prepare hook.

A background loop that fails is logged with its traceback and started again after a
pause that doubles up to ``RESTART_MAX_S``; the cluster watches' failure is also the
configuration's error (``/readyz``, ``/stats``, the policy's status), since no change
reaches the router while they are down. The client libraries those loops use in worker
threads (kubernetes; requests under the Prometheus client) are imported here, on one
thread, before any loop runs: imported for the first time by two threads at once,
requests was seen half-initialised by one of them, whose loop then ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from gpufleet.router import (
    appkeys,
    cluster,
    discovery,
    edge,
    handlers,
    liveconfig,
    loops,
    reconfigure,
    service,
    signals,
)
from gpufleet.router.config import RouterConfig
from gpufleet.router.drain import Drain
from gpufleet.router.gate import Gate
from gpufleet.router.metrics import RouterMetrics
from gpufleet.router.registry import Registry
from gpufleet.router.stats import Stats
from gpufleet.routing import admission, affinity, throughput, waitqueue

Clock = Callable[[], float]
log = logging.getLogger("gpufleet.router")
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
# What the background loops import in worker threads: loaded once, up front.
_THREADED_IMPORTS = ("requests", "urllib3", "prometheus_api_client")
_KUBERNETES_IMPORTS = ("kubernetes.client", "kubernetes.config", "kubernetes.watch")


def build(config: RouterConfig, *, clock: Clock = time.monotonic) -> service.Router:
    """Every component of the router, from a validated config."""
    policy = config.policy
    prometheus = policy.prometheus
    registry = Registry(
        policy.failure_handling.circuit_breaker,
        clock=clock,
        staleness_s=prometheus.staleness_seconds if prometheus else 30.0,
    )
    gen = policy.generation_weights
    learner = throughput.Learner(gen.learning_half_life_seconds, gen.min_samples)
    registry.replace(discovery.weigh(config, learner, discovery.static_endpoints(config)))
    # Keys in Secrets arrive with the first listing; until then no tenant can be
    # authenticated, and /readyz says so.
    from_secrets = bool(config.secret_names())

    def signal_age() -> float | None:
        return router.signal_age()

    def demand() -> dict[str, waitqueue.Demand]:
        return router.demand()

    router = service.Router(
        config=config,
        registry=registry,
        quotas=admission.Quotas(
            {t.name: t for t in policy.admission.tenants},
            policy.admission.anonymous_tokens_per_minute,
        ),
        keyring=admission.KeyRing({} if from_secrets else config.keys()),
        sessions=affinity.SessionTable(ttl_s=policy.affinity.session.ttl_seconds),
        gate=Gate(
            waitqueue.WaitQueue(policy.admission.queue.max_size, policy.admission.queue.order),
            clock=clock,
        ),
        metrics=RouterMetrics(registry, signal_age, demand=demand),
        stats=Stats(),
        learner=learner,
        clock=clock,
        config_state=liveconfig.ConfigState(
            generation=config.policy_generation, applied_at=time.time(), loaded=not from_secrets
        ),
    )
    registry.listeners.append(router.gate.wake_all)
    registry.forgetters.append(router.forget)
    return router


def preload(config: RouterConfig) -> None:
    """Import what the background loops use in worker threads, on this thread."""
    wanted = _THREADED_IMPORTS + (_KUBERNETES_IMPORTS if config.kubernetes else ())
    for name in wanted:
        importlib.import_module(name)


def create_app(config: RouterConfig, *, clock: Clock = time.monotonic) -> web.Application:
    preload(config)
    router = build(config, clock=clock)
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        middlewares=[edge.trace_middleware, edge.error_middleware],
    )
    app[appkeys.ROUTER] = router
    app[appkeys.DRAIN] = Drain()
    app.on_response_prepare.append(edge.on_prepare)
    app.cleanup_ctx.append(_client_session)
    app.cleanup_ctx.append(_loop(loops.health_loop))
    if config.kubernetes is not None:
        app.cleanup_ctx.append(_loop(cluster.cluster_loop, on_failure=_watches_failed))
    app.cleanup_ctx.append(_loop(signals.prometheus_loop))
    app.cleanup_ctx.append(_loop(loops.learning_loop))
    app.on_shutdown.append(_drain)
    app.router.add_post("/v1/chat/completions", handlers.generate("chat"))
    app.router.add_post("/v1/completions", handlers.generate("completion"))
    app.router.add_post("/v1/embeddings", handlers.generate("embedding"))
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/stats", handlers.stats_json)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    policy = app[appkeys.ROUTER].policy.failure_handling
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.connect_timeout_seconds)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
    app[appkeys.HTTP] = session
    yield
    await session.close()


Loop = Callable[[web.Application], Coroutine[Any, Any, None]]
Failed = Callable[[web.Application, BaseException], None]


def _loop(
    body: Loop, *, on_failure: Failed | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx entry running ``body`` as a task for the app's lifetime, started
    again (after ``restart_delay``) whenever it fails."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_supervised(app, body, on_failure))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def _supervised(app: web.Application, body: Loop, on_failure: Failed | None) -> None:
    failures = 0
    while True:
        try:
            await body(app)
            return
        except Exception as exc:  # a loop must never end unseen; it runs again
            failures += 1
            delay = restart_delay(failures)
            log.exception("%s failed; starting it again in %.0fs", body.__name__, delay)
            if on_failure is not None:
                on_failure(app, exc)
        await asyncio.sleep(delay)


def restart_delay(failures: int) -> float:
    """Seconds before a loop that failed ``failures`` times in a row runs again."""
    return float(min(RESTART_MAX_S, RESTART_MIN_S * 2 ** (failures - 1)))


def _watches_failed(app: web.Application, exc: BaseException) -> None:
    reason = f"watching the cluster failed ({type(exc).__name__}: {exc}); retrying"
    reconfigure.reject(app[appkeys.ROUTER], reason)


async def _drain(app: web.Application) -> None:
    app[appkeys.ROUTER].draining = True
