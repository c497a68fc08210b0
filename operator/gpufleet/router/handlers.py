"""HTTP handlers: the only place request objects exist. Each reads what it needs from
the request, calls ``intake`` and ``pipeline``, and records the outcome; errors become
OpenAI-shaped JSON in ``edge.error_middleware``. No handler logs a key or prompt text.

A generation request is tracked by the app's ``Drain`` from start to end; when a
stopping router cuts it (``drainSeconds`` ran out), it answers 503 if nothing was sent
yet, and otherwise ends its stream with an SSE error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpufleet import logsetup
from gpufleet.router import appkeys, body, edge, intake, pipeline, service, spending, stats
from gpufleet.router.drain import Drain
from gpufleet.router.errors import (
    PayloadTooLarge,
    RouterError,
    Unavailable,
    UnsupportedMediaType,
)
from gpufleet.router.outcome import Outcome

log = logging.getLogger("gpufleet.router")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"


def _router(request: web.Request) -> service.Router:
    return request.app[appkeys.ROUTER]


def generate(kind: body.Kind) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        drain = request.app[appkeys.DRAIN]
        drain.enter()
        try:
            return await _generate(request, kind, drain)
        finally:
            drain.leave()

    return handle


async def _generate(request: web.Request, kind: body.Kind, drain: Drain) -> web.StreamResponse:
    router = _router(request)
    router.stats.total += 1
    outcome = Outcome(started=router.clock())
    job: intake.Job | None = None
    try:
        _check_media_type(request)
        tenant = intake.tenant_of(router, request.headers.get("Authorization"))
        parsed = body.parse(
            kind,
            await _read(request, router),
            max_tokens_limit=router.config.limits.max_tokens_limit,
        )
        job = intake.prepare(router, parsed, tenant=tenant, headers=request.headers)
        http = appkeys.http(request.app)
        response = await pipeline.run(router, job, http=http, client=request, outcome=outcome)
        outcome.status = outcome.status or response.status
        return _debug(router, response, outcome)
    except RouterError as error:
        outcome.label = f"rejected_{error.status}"
        outcome.status = outcome.status or error.status
        raise
    except asyncio.CancelledError:
        if not drain.cutting:
            outcome.label = "cancelled"
            raise
        outcome.label = "drain_cut"
        cut = await _cut(drain, router.config.drain_seconds)
        outcome.status = cut.status
        return cut
    except ConnectionResetError:
        outcome.label = "cancelled"
        raise
    except Exception:
        outcome.label = "internal_error"
        raise
    finally:
        _record(router, job, outcome)


async def _cut(drain: Drain, drain_s: float) -> web.StreamResponse:
    """End a request the drain cut: 503 before the headers, an SSE error event after."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    error = Unavailable(f"the router is stopping and drainSeconds ({drain_s}s) ran out")
    response = drain.response()
    if response is None:
        return edge.error_response(error)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write(error.sse_event())
        await response.write_eof()
    return response


def _check_media_type(request: web.Request) -> None:
    """JSON bodies only; a request without Content-Type is read as JSON (as vLLM does)."""
    if "Content-Type" in request.headers and request.content_type != _JSON:
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type!r} is not supported; send {_JSON}",
            param="Content-Type",
        )


async def _read(request: web.Request, router: service.Router) -> bytes:
    """The body, ``PayloadTooLarge`` beyond ``maxBodyBytes`` (declared or streamed)."""
    limit = router.config.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the request body exceeds {limit} bytes") from None


def _debug(
    router: service.Router, response: web.StreamResponse, outcome: Outcome
) -> web.StreamResponse:
    if router.config.debug_headers and outcome.decision and not response.prepared:
        response.headers.update(pipeline.debug_headers(router, outcome.decision))
    return response


def _record(router: service.Router, job: intake.Job | None, outcome: Outcome) -> None:
    decision = outcome.decision
    gpu = decision.endpoint.gpu if decision else ""
    endpoint = decision.endpoint.id if decision else ""
    model = job.model if job else ""
    klass = job.klass if job else ""
    code = str(outcome.code())
    metrics = router.metrics
    metrics.requests.labels(model, gpu, endpoint, klass, outcome.label, code).inc()
    metrics.duration.labels(model, gpu, klass, code).observe(router.clock() - outcome.started)
    if job is not None and outcome.usage is not None and outcome.label == "success":
        metrics.prompt_tokens.labels(job.tenant, model, gpu).inc(outcome.usage.prompt_tokens)
        metrics.completion_tokens.labels(job.tenant, model, gpu).inc(
            outcome.usage.completion_tokens
        )
        spending.record(router, job, outcome)
    router.stats.outcomes[outcome.label] += 1
    if klass:
        router.stats.classes[klass] += 1
    if decision is not None:
        router.stats.generations[gpu] += 1
        tiered, fallback = bool(router.policy.spillover.tiers), decision.endpoint.model != model
        router.stats.routed(decision.tier, tiered=tiered, fallback=fallback)
        if tiered or fallback:
            tier = "" if not tiered else "overflow" if decision.tier is None else str(decision.tier)
            metrics.tier_requests.labels(model, tier, str(fallback).lower()).inc()
        if decision.trigger:
            router.stats.triggers[decision.trigger] += 1
            router.metrics.triggers.labels(decision.trigger).inc()
    _log_outcome(router, job, outcome)


def _log_outcome(router: service.Router, job: intake.Job | None, outcome: Outcome) -> None:
    """One INFO line per request: who asked for what, where it went, how it ended. No
    prompt and no key: the job's tenant is the name the key maps to."""
    if not log.isEnabledFor(logging.INFO):
        return  # its fields cost more than the rest of the accounting
    decision = outcome.decision
    fields: dict[str, object] = {
        "model": job.model if job else "",
        "tenant": job.tenant if job else "",
        "class": job.klass if job else "",
        "endpoint": decision.endpoint.id if decision else "",
        "gpu": decision.endpoint.gpu if decision else "",
        "status": outcome.code(),
        "outcome": outcome.label,
        "seconds": round(router.clock() - outcome.started, 3),
    }
    if outcome.usage is not None:
        fields["prompt_tokens"] = outcome.usage.prompt_tokens
        fields["completion_tokens"] = outcome.usage.completion_tokens
    log.info("request %s", logsetup.kv(fields), extra={"fields": fields})


async def models(request: web.Request) -> web.Response:
    names = sorted(_router(request).served_models())
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "gpufleet"} for n in names]
    return web.json_response({"object": "list", "data": data})


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(_router(request).metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def stats_json(request: web.Request) -> web.Response:
    router = _router(request)
    document = stats.document(
        router.stats,
        router.registry,
        strategy=router.policy.strategy,
        signal_age_s=router.signal_age(),
        signal_error=router.signals_error,
        queue_waiting=len(router.gate),
        config_state=router.config_state,
        demand=router.demand(),
        tiers=router.policy.spillover,
        spread=(router.spread, router.clock()),
        tightening=router.attainment.factors(),
    )
    return web.json_response(document)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "time": time.time()})


async def readyz(request: web.Request) -> web.Response:
    """200 when not draining, a configuration with every tenant key is loaded, and at
    least one endpoint is healthy — or the configuration declares pools' models
    (``kubernetes.poolModels``), whose requests the router holds while a pool scales
    from zero: a router whose pools are all at zero must stay in its Service, or no
    request would ever reach it to start them."""
    router = _router(request)
    healthy = sum(1 for s in router.registry.slots.values() if s.healthy)
    state = router.config_state
    source = router.config.kubernetes
    holds = bool(source and source.pool_models)
    ready = (healthy > 0 or holds) and not router.draining and state.loaded
    body_ = {"ready": ready, "healthy_endpoints": healthy, "draining": router.draining,
             "config_loaded": state.loaded, "config_error": state.error}  # fmt: skip
    return web.json_response(body_, status=200 if ready else 503)
