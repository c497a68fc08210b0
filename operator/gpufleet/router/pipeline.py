"""The request pipeline: admit → plan → execute → account, over one request context.

The handler parses the request and ``intake`` prices it into a ``Job``; ``run`` then
takes the tenant's quota for the whole of it (``admitted``: given back in its
``finally``, however the request ends), makes one immutable ``Context`` and forwards:

- **plan**: ``service.plan`` asks ``gpufleet.routing.routeplan`` over a snapshot of the
  router; while the plan says wait, the request waits in the admission queue (the
  ``Gate``, at most until the request's deadline) and plans again when woken; a
  refusal is 400 (too large) or 503;
- **execute**: the planned endpoint is leased and ``proxy.attempt`` runs one attempt,
  with an ``attempt.Watch`` as its observer (breaker, first token, learning). A failure
  before the first byte is retried on another endpoint — planned again without the
  endpoints tried — within ``maxRetries`` and the router-wide retry budget, after
  ``backoffMillis``; once the first chunk reaches the client the request is committed;
- **account**: retried error statuses are charged to their endpoints' breakers when
  the request ends, unless every endpoint failed it alike (``verdicts.charged``); the
  handler then records the ``Outcome`` (metrics, ``/stats``, spending, the access log).

``requestTimeoutSeconds`` bounds the whole of it from the moment it is forwarded —
queueing, every attempt and retry, the stream to its end: before the first byte the
request answers 504 and is not retried; it is charged to no endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from gpufleet.router import appkeys, explain, intake, proxy, service
from gpufleet.router.attempt import Retry, Watch
from gpufleet.router.errors import BadRequest, RateLimited, Unavailable
from gpufleet.router.outcome import Outcome
from gpufleet.router.registry import Lease, Slot
from gpufleet.routing import admission, filters, picker, routeplan, verdicts, waitqueue
from gpufleet.routing.model import Endpoint, RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """One admitted request as the pipeline carries it, made once (``context``): the
    job and its routing request, its class's TPOT bound for the lease (the bound in
    seconds, its output tokens; None when the class has none), the upstream request
    headers, the timeouts with the request's deadline, the HTTP client session, the
    client's request (its path; a stream's answer is prepared on it) and the outcome
    record the attempts fill in."""

    job: intake.Job
    routing: RoutingRequest
    tpot: tuple[float, int] | None
    headers: Mapping[str, str]
    timeouts: proxy.Timeouts
    http: aiohttp.ClientSession
    client: web.Request
    outcome: Outcome


async def run(
    router: service.Router,
    job: intake.Job,
    *,
    http: aiohttp.ClientSession,
    client: web.Request,
    outcome: Outcome,
) -> web.StreamResponse:
    """Admit, plan, execute; ``RateLimited`` when the tenant is over its quota."""
    async with admitted(router, job, outcome):
        ctx = context(router, job, http=http, client=client, outcome=outcome)
        response = await forward(router, ctx)
        outcome.status = outcome.status or response.status
        return response


@contextlib.asynccontextmanager
async def admitted(
    router: service.Router, job: intake.Job, outcome: Outcome
) -> AsyncIterator[None]:
    """The tenant's tokens and a concurrency slot for the scope; ``RateLimited`` when
    over. When the scope ends, however it ends, the slot is given back and the charge
    settled against what the request used (``admission.used_tokens``: its usage, none
    when it got no answer)."""
    e = job.estimate
    verdict = router.quotas.admit(job.tenant, e.input_tokens + e.output_tokens, router.clock())
    if not verdict.admitted:
        raise RateLimited(verdict.reason, retry_after_s=verdict.retry_after_s)
    try:
        yield
    finally:
        router.quotas.release(job.tenant)
        used = outcome.usage
        tokens = used.prompt_tokens + used.completion_tokens if used is not None else None
        spent = admission.used_tokens(outcome.status, tokens)
        router.quotas.settle(job.tenant, verdict.charged, spent, router.clock())


def context(
    router: service.Router,
    job: intake.Job,
    *,
    http: aiohttp.ClientSession,
    client: web.Request,
    outcome: Outcome,
) -> Context:
    """The request's context, its deadline ``requestTimeoutSeconds`` from now."""
    fh = router.policy.failure_handling
    deadline = asyncio.get_running_loop().time() + fh.request_timeout_seconds
    timeouts = proxy.Timeouts(
        fh.connect_timeout_seconds, fh.first_byte_timeout_seconds,
        fh.chunk_idle_timeout_seconds, fh.request_timeout_seconds, deadline,
    )  # fmt: skip
    trace = client.get(appkeys.TRACE)
    headers = {"Content-Type": "application/json", **(trace.upstream_headers() if trace else {})}
    routing = job.routing_request(job.model)
    tpot = _tpot_bound(router, job.klass, job.estimate.output_tokens)
    return Context(job, routing, tpot, headers, timeouts, http, client, outcome)


def _tpot_bound(router: service.Router, klass: str, output_tokens: int) -> tuple[float, int] | None:
    """(the class's TPOT bound in seconds, the request's output tokens) when its class
    bounds TPOT: what the ``cost`` objective protects when it places later prompts."""
    found = router.policy.request_class(klass)
    bound = found.slo.tpot_millis if found is not None else None
    return None if bound is None else (bound / 1000, output_tokens)


async def forward(router: service.Router, ctx: Context) -> web.StreamResponse:
    """Attempts on endpoint after endpoint until one answers the client."""
    router.retry_budget.on_request(router.clock())
    failed_with: list[tuple[Slot, int]] = []
    served = False
    try:
        response = await _tries(router, ctx, failed_with)
        served = True
        return response
    finally:
        _charge(router, failed_with, served=served)


async def _tries(
    router: service.Router, ctx: Context, failed_with: list[tuple[Slot, int]]
) -> web.StreamResponse:
    """Plan and attempt until served; each retried error status is added to
    ``failed_with``; the last failure's error when no retry is left."""
    tried: set[str] = set()
    retries = router.policy.failure_handling.retries
    last: Retry | None = None
    while True:
        decision = await _route(router, ctx, frozenset(tried), last)
        ctx.outcome.decision = decision
        watch = Watch(router, ctx.job, ctx.outcome, _lease(router, ctx, decision))
        try:
            return await _attempt(router, ctx, decision, watch)
        except Retry as failed:
            tried.add(decision.endpoint.id)
            if failed.status is not None:
                failed_with.append((watch.lease.slot, failed.status))
            if not verdicts.may_retry(len(tried), max_retries=retries.max_retries) or not (
                router.take_retry()
            ):
                raise failed.error from None
            last = failed
        finally:
            watch.close()
            router.gate.freed(decision.endpoint.model)
        await asyncio.sleep(retries.backoff_millis / 1000)


async def _attempt(
    router: service.Router, ctx: Context, decision: picker.Decision, watch: Watch
) -> web.StreamResponse:
    target = _target(router, ctx, decision)
    try:
        return await proxy.attempt(
            ctx.http, target, timeouts=ctx.timeouts, client=ctx.client, observer=watch
        )
    except proxy.NoAnswer as failure:
        raise watch.unanswered(failure) from failure.__cause__


def _lease(router: service.Router, ctx: Context, decision: picker.Decision) -> Lease:
    estimate = ctx.job.estimate
    lease = router.registry.lease(
        decision.endpoint.id, estimate.cost, prefill=estimate.input_tokens,
        kv=estimate.input_tokens + estimate.output_tokens, tpot=ctx.tpot,
    )  # fmt: skip
    lease.predicted = decision.prediction
    return lease


def _target(router: service.Router, ctx: Context, decision: picker.Decision) -> proxy.Target:
    """The request for the decision's endpoint, naming its model (the fallback's, when
    falling back); with ``debugHeaders``, a stream's answer says where it went."""
    endpoint: Endpoint = decision.endpoint
    job = ctx.job
    stream = job.parsed.stream
    shown = debug_headers(router, decision) if stream and router.config.debug_headers else {}
    payload = job.payload_for(endpoint.model)
    return proxy.Target(endpoint.id + ctx.client.path, payload, ctx.headers, stream, shown)


def debug_headers(router: service.Router, decision: picker.Decision) -> dict[str, str]:
    """Which endpoint and GPU generation served, and why (``debugHeaders: true``)."""
    endpoint = decision.endpoint
    chosen = {"x-gpufleet-endpoint": endpoint.id, "x-gpufleet-gpu": endpoint.gpu}
    return chosen | explain.header(decision, objective=router.policy.objective)


def _charge(router: service.Router, failed_with: list[tuple[Slot, int]], *, served: bool) -> None:
    """Count a request's retried error statuses against their endpoints' breakers,
    unless they follow the request (``verdicts.charged``)."""
    if not verdicts.charged([status for _, status in failed_with], served=served):
        return
    now = router.clock()
    for slot, _ in failed_with:
        slot.breaker.on_failure(now)


async def _route(
    router: service.Router, ctx: Context, tried: frozenset[str], last: Retry | None
) -> picker.Decision:
    """The next endpoint; after a failure, the failure itself when none is left."""
    try:
        decision = await _planned(router, ctx, tried)
    except Unavailable:
        if last is not None:
            raise last.error from None
        raise
    if last is not None:
        router.metrics.retries.labels(last.reason).inc()
        router.stats.retries += 1
    return decision


async def _planned(router: service.Router, ctx: Context, tried: frozenset[str]) -> picker.Decision:
    """The plan's endpoint, after waiting in the queue while it says wait (at most until
    the request's deadline); ``BadRequest`` or ``Unavailable`` when it refuses."""
    result = service.plan(router, ctx.routing, tried)
    if isinstance(result, routeplan.Wait):
        try:
            async with asyncio.timeout_at(ctx.timeouts.deadline):
                result = await _queued(router, ctx, tried, result.waiting)
        except TimeoutError:
            raise ctx.timeouts.request_timeout() from None
    if isinstance(result, routeplan.Send):
        return result.decision
    if result.kind == "too_large":
        raise BadRequest(result.reason, param="messages")
    raise Unavailable(result.reason, retry_after_s=1)


async def _queued(
    router: service.Router, ctx: Context, exclude: frozenset[str], waiting: waitqueue.Waiting
) -> routeplan.Send | routeplan.Refuse:
    """Wait in the request's model's lane of the gate, planning again (for its own
    model) each time woken, until the plan no longer says wait; ``Unavailable`` past the
    queue's timeout. Woken with nothing free, it goes back with the lane's free slots."""
    job, gate = ctx.job, router.gate
    entered = router.clock()
    ticket = gate.enter(job.priority, waiting, lane=job.model)
    result: routeplan.Plan | None = None
    try:
        while True:
            await gate.wait(ticket, entered + router.policy.admission.queue.timeout_seconds)
            result = service.plan(router, ctx.routing, exclude, fallback=False)
            if not isinstance(result, routeplan.Wait):
                return result
            room = filters.free_slots(job.model, router.registry.candidates())
            gate.retry(ticket, result.waiting, room=room)
    finally:
        gate.leave(ticket, served=isinstance(result, routeplan.Send))
        router.metrics.queue_wait.labels(job.klass).observe(router.clock() - entered)
