"""Forwarding one request upstream: retries before the first byte, streaming after.

``forward`` leases an endpoint, runs one ``_attempt`` and, when the attempt failed
before anything reached the client (connect error, timeout, a retryable 5xx, a stream
that died before its first chunk), retries on another endpoint within the request's
``maxRetries`` and the router-wide rolling retry budget. Once the first chunk is written the
request is committed: an upstream failure then ends the client's SSE stream with an
error event and no ``[DONE]``. Streams are passed through chunk by chunk as they
arrive. The lease is released in ``finally`` — completion, failure and client
cancellation alike.

Four timeouts (``failureHandling``), each on its own clock:

- ``connectTimeoutSeconds``: one TCP connect to an endpoint; retried elsewhere, else 504;
- ``firstByteTimeoutSeconds``: one attempt, from sending it to the first chunk of a
  stream (or the whole body of an answer that is not streamed); retried, else 504;
- ``chunkIdleTimeoutSeconds``: silence between two chunks; the stream ends with an
  error event;
- ``requestTimeoutSeconds``: the whole request from the moment it is forwarded —
  queueing, every attempt and retry, the stream to its end. Before the first byte it
  answers 504 and is not retried (no time is left); after, the stream ends with an
  error event. It is charged to no endpoint: the request's length is at fault.

Breaker bookkeeping: connect errors, connect, first-byte and idle timeouts, 5xx and
streams that break off count as failures, except 503, which a busy engine answers
(backpressure, as is 429); a request timeout counts as nothing; any other answer is a
success, a stream only once it has finished. Retried error statuses are counted when
the request ends, and not at all when every endpoint tried failed it with the same
status: that failure follows the request, not the endpoints.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses

import aiohttp
from aiohttp import web

from gpufleet.api.runtime import FailureHandling
from gpufleet.router import appkeys, explain, firsttoken, learning, service, spending, usage
from gpufleet.router.errors import RouterError, Unavailable, UpstreamFailed, UpstreamTimeout
from gpufleet.router.outcome import Outcome
from gpufleet.router.registry import Lease, Slot
from gpufleet.routing import accounting, breaker, picker
from gpufleet.routing.model import Endpoint

_HOP_HEADERS = {"content-type", "content-encoding", "x-request-id", "openai-processing-ms"}
# A stream's last reads kept for its usage event (the last before [DONE]; one read may
# hold a part of it, the next the rest and [DONE]).
_TAIL_CHUNKS = 3


class _Retryable(Exception):
    """A failure before the first byte; ``status`` is the upstream's error status, whose
    breaker verdict waits for the request's end (``_charge``)."""

    def __init__(self, error: RouterError, reason: str, status: int | None = None) -> None:
        super().__init__(error.message)
        self.error, self.reason, self.status = error, reason, status


async def forward(
    router: service.Router,
    http: aiohttp.ClientSession,
    job: service.Job,
    request: web.Request,
    outcome: Outcome,
) -> web.StreamResponse:
    router.retry_budget.on_request(router.clock())
    failed_with: list[tuple[Slot, int]] = []
    served = False
    limit = router.policy.failure_handling.request_timeout_seconds
    deadline = asyncio.get_running_loop().time() + limit
    try:
        response = await _tries(router, http, job, request, outcome, failed_with, deadline)
        served = True
        return response
    finally:
        _charge(router, failed_with, served=served)


def _tpot_bound(router: service.Router, klass: str, output_tokens: int) -> tuple[float, int] | None:
    """(the class's TPOT bound in seconds, the request's output tokens) when its class
    bounds TPOT: what the ``cost`` objective protects when it places later prompts."""
    found = router.policy.request_class(klass)
    bound = found.slo.tpot_millis if found is not None else None
    return None if bound is None else (bound / 1000, output_tokens)


async def _tries(
    router: service.Router,
    http: aiohttp.ClientSession,
    job: service.Job,
    request: web.Request,
    outcome: Outcome,
    failed_with: list[tuple[Slot, int]],
    deadline: float,
) -> web.StreamResponse:
    """Attempts on endpoint after endpoint until ``deadline`` (loop time); each error
    status is added to ``failed_with``."""
    tried: set[str] = set()
    retries = router.policy.failure_handling.retries
    last: _Retryable | None = None
    while True:
        decision = await _route(router, job, frozenset(tried), last, deadline)
        outcome.decision = decision
        estimate = job.estimate
        lease = router.registry.lease(
            decision.endpoint.id, estimate.cost, prefill=estimate.input_tokens,
            kv=estimate.input_tokens + estimate.output_tokens,
            tpot=_tpot_bound(router, job.klass, estimate.output_tokens),
        )  # fmt: skip
        lease.predicted = decision.prediction
        try:
            return await _attempt(router, http, job, request, lease, outcome, deadline)
        except _Retryable as failed:
            tried.add(decision.endpoint.id)
            if failed.status is not None:
                failed_with.append((lease.slot, failed.status))
            if len(tried) > retries.max_retries or not router.take_retry():
                raise failed.error from None
            last = failed
        finally:
            lease.release()
            router.gate.freed(lease.slot.endpoint.model)
        await asyncio.sleep(retries.backoff_millis / 1000)


def _charge(router: service.Router, failed_with: list[tuple[Slot, int]], *, served: bool) -> None:
    """Count a request's error statuses against their endpoints' breakers, unless they
    follow the request (every endpoint tried failed it alike: a poison request)."""
    if breaker.follows_request([status for _, status in failed_with], served=served):
        return
    now = router.clock()
    for slot, _ in failed_with:
        slot.breaker.on_failure(now)


def request_timeout(fh: FailureHandling) -> UpstreamTimeout:
    limit = fh.request_timeout_seconds
    return UpstreamTimeout(f"the request did not finish within requestTimeoutSeconds ({limit}s)")


async def _route(
    router: service.Router,
    job: service.Job,
    tried: frozenset[str],
    last: _Retryable | None,
    deadline: float,
) -> picker.Decision:
    """The next endpoint (queueing at most until ``deadline``); after a failure, the
    failure itself when none is left."""
    try:
        async with asyncio.timeout_at(deadline):
            decision = await service.route(router, job, tried)
    except TimeoutError:
        raise request_timeout(router.policy.failure_handling) from None
    except Unavailable:
        if last is not None:
            raise last.error from None
        raise
    if last is not None:
        router.metrics.retries.labels(last.reason).inc()
        router.stats.retries += 1
    return decision


async def _attempt(
    router: service.Router,
    http: aiohttp.ClientSession,
    job: service.Job,
    request: web.Request,
    lease: Lease,
    outcome: Outcome,
    deadline: float,
) -> web.StreamResponse:
    fh = router.policy.failure_handling
    slot = lease.slot
    started = router.clock()
    first_byte_at = asyncio.get_running_loop().time() + fh.first_byte_timeout_seconds
    try:
        async with asyncio.timeout_at(min(first_byte_at, deadline)):
            upstream, first = await _open(http, slot.endpoint, job, request, fh)
    except aiohttp.ConnectionTimeoutError:
        slot.breaker.on_failure(router.clock())
        raise _Retryable(_connect_timeout(fh), "connect_timeout") from None
    except TimeoutError:
        if first_byte_at >= deadline:  # the request's own limit came first
            raise request_timeout(fh) from None
        slot.breaker.on_failure(router.clock())
        raise _Retryable(_first_byte_timeout(fh), "timeout") from None
    except (aiohttp.ClientError, OSError) as exc:
        slot.breaker.on_failure(router.clock())
        raise _Retryable(UpstreamFailed("could not reach a model server"), _reason(exc)) from exc
    streaming = job.parsed.stream and upstream.status == 200
    first_byte_s = router.clock() - started

    def late(at: float) -> None:
        if not outcome.slo_told:
            outcome.slo_told = spending.first_token(router, job.klass, arrived=outcome.started,
                                                    at=at)  # fmt: skip

    marker = firsttoken.Marker(router, lease, sent=started, then=late)
    try:
        _judge(router, upstream.status, slot, streaming=streaming)
        router.metrics.ttft.labels(job.model, slot.endpoint.gpu, job.klass).observe(first_byte_s)
        if streaming:
            return await _stream(router, upstream, first, request, marker, outcome, deadline,
                                 job=job)  # fmt: skip
        learning.first_token(router, lease, seconds=first_byte_s, streamed=False)
        outcome.label = _label(upstream.status)
        if upstream.status == 200:
            learning.answer_finished(router, slot.endpoint.id, body=first, since=started)
            outcome.usage = usage.from_body(first)
        return web.Response(body=first, status=upstream.status, headers=_down_headers(upstream))
    finally:
        upstream.close()
        outcome.attempt = accounting.Attempt(
            started, started + first_byte_s if marker.at is None else marker.at, router.clock(),
            (lease.batch + slot.in_flight) / 2, streaming,
        )  # fmt: skip


def _connect_timeout(fh: FailureHandling) -> UpstreamTimeout:
    limit = fh.connect_timeout_seconds
    return UpstreamTimeout(
        f"could not connect to a model server within connectTimeoutSeconds ({limit}s)"
    )


def _first_byte_timeout(fh: FailureHandling) -> UpstreamTimeout:
    limit = fh.first_byte_timeout_seconds
    return UpstreamTimeout(
        f"the model server sent nothing within firstByteTimeoutSeconds ({limit}s)"
    )


async def _open(
    http: aiohttp.ClientSession,
    endpoint: Endpoint,
    job: service.Job,
    request: web.Request,
    fh: FailureHandling,
) -> tuple[aiohttp.ClientResponse, bytes]:
    """Send the request, naming the endpoint's model (the fallback's, when falling
    back), and read its first chunk; the response is closed if that fails.

    A timeout or a broken connection can strike between the headers and the first
    chunk; the connection must then go back closed, not leak to the garbage collector.
    """
    url = endpoint.id + request.path
    payload = job.payload_for(endpoint.model)
    # Read per request: the policy (and so the connect timeout) can change while serving.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=fh.connect_timeout_seconds)
    headers = _upstream_headers(request)
    upstream = await http.post(url, data=payload, headers=headers, timeout=timeout)
    try:
        return upstream, await _first_chunk(upstream, job.parsed.stream)
    except BaseException:
        upstream.close()
        raise


async def _first_chunk(upstream: aiohttp.ClientResponse, stream: bool) -> bytes:
    """The whole body, or for a 200 stream its first chunk (b'' if it ended at once)."""
    if stream and upstream.status == 200:
        return await upstream.content.readany()
    return await upstream.read()


def _judge(router: service.Router, status: int, slot: Slot, *, streaming: bool) -> None:
    """Breaker bookkeeping for an answer; ``_Retryable`` for the 5xx to retry.

    A stream's 200 is not yet a success: it counts when the stream finishes, and a
    stream that breaks off counts as a failure (``_stream``). A retried error status
    is judged when the request ends (``_charge``), once it is known whether other
    endpoints failed the request alike.
    """
    retried = status >= 500 and status in router.policy.failure_handling.retries.on_status
    if retried:
        error = UpstreamFailed(f"the model server answered {status}")
        raise _Retryable(error, f"status_{status}", status if status != 503 else None)
    if status >= 500 and status != 503:
        slot.breaker.on_failure(router.clock())
    elif status not in (429, 503) and not streaming:
        slot.breaker.on_success()


def debug_headers(decision: picker.Decision, *, objective: str) -> dict[str, str]:
    """Which endpoint and GPU generation served, and why (``debugHeaders: true``)."""
    endpoint = decision.endpoint
    chosen = {"x-gpufleet-endpoint": endpoint.id, "x-gpufleet-gpu": endpoint.gpu}
    return chosen | explain.header(decision, objective=objective)


async def _stream(
    router: service.Router,
    upstream: aiohttp.ClientResponse,
    first: bytes,
    request: web.Request,
    marker: firsttoken.Marker,
    outcome: Outcome,
    deadline: float,
    *,
    job: service.Job,
) -> web.StreamResponse:
    lease = marker.lease
    if not first:
        lease.slot.breaker.on_failure(router.clock())
        raise _Retryable(UpstreamFailed("the model server ended the stream at once"), "empty")
    response = web.StreamResponse(status=200, headers=_down_headers(upstream))
    response.headers["Cache-Control"] = "no-cache"
    # A stream's headers leave before the handler sees it.
    if router.config.debug_headers and outcome.decision is not None:
        objective = router.policy.objective
        response.headers.update(debug_headers(outcome.decision, objective=objective))
    finished = False
    try:
        await response.prepare(request)
        outcome.status = response.status
        await response.write(first)
        lease.progress(first.count(b"data:"))
        marker.seen(first)
        end = await _pump(router, upstream, response, marker, deadline)
        finished = end.error is None
        if finished:
            events = first.count(b"data:") + end.events
            outcome.usage = usage.from_stream_tail([first, *end.tail]) or usage.estimated(
                events=events, prompt_estimate=job.estimate.input_tokens,
                chat=job.parsed.kind == "chat",
            )  # fmt: skip
            lease.slot.breaker.on_success()
            if marker.at is not None:
                learning.stream_finished(
                    router, lease, events=marker.events_after,
                    tokens=outcome.usage.completion_tokens, since=marker.at,
                )  # fmt: skip
        elif end.endpoint_at_fault:
            lease.slot.breaker.on_failure(router.clock())
            outcome.label = "upstream_error_mid_stream"
        else:
            outcome.label = "request_timeout_mid_stream"
        if end.error is not None:
            await response.write(end.error.sse_event())
        await response.write_eof()
    except ConnectionResetError:
        # The client went away; if the upstream had finished, it had everything
        # (clients often close right after [DONE], before the chunked terminator).
        if not finished:
            outcome.label = "cancelled"
    return response


@dataclasses.dataclass(frozen=True, slots=True)
class _StreamEnd:
    """How a stream ended: ``error`` None when the upstream finished it; a failure is
    charged to the endpoint unless the request ran out of time (``endpoint_at_fault``)."""

    events: int
    error: RouterError | None = None
    endpoint_at_fault: bool = True
    tail: tuple[bytes, ...] = ()


async def _pump(
    router: service.Router,
    upstream: aiohttp.ClientResponse,
    response: web.StreamResponse,
    marker: firsttoken.Marker,
    deadline: float,
) -> _StreamEnd:
    """Copy chunks until the upstream ends, goes quiet for the idle timeout, or the
    request reaches ``deadline`` (loop time)."""
    fh = router.policy.failure_handling
    idle = fh.chunk_idle_timeout_seconds
    loop = asyncio.get_running_loop()
    events = 0
    tail: collections.deque[bytes] = collections.deque(maxlen=_TAIL_CHUNKS)
    try:
        async with asyncio.timeout_at(min(loop.time() + idle, deadline)) as limit:
            while chunk := await upstream.content.readany():
                # A client that went away raises here (ConnectionResetError) and ends
                # the request; the caller's finally closes the upstream connection.
                await response.write(chunk)
                tail.append(chunk)
                count = chunk.count(b"data:")
                events += count
                marker.lease.progress(count)
                marker.seen(chunk)
                limit.reschedule(min(loop.time() + idle, deadline))
    except TimeoutError:
        if loop.time() >= deadline:
            return _StreamEnd(events, request_timeout(fh), endpoint_at_fault=False)
        message = f"the model server sent nothing for chunkIdleTimeoutSeconds ({idle}s)"
        return _StreamEnd(events, UpstreamTimeout(message))
    except aiohttp.ClientPayloadError:
        return _StreamEnd(events, UpstreamFailed("the model server's stream broke off"))
    if not upstream.content.at_eof():
        return _StreamEnd(events, UpstreamFailed("the model server's stream broke off"))
    return _StreamEnd(events, tail=tuple(tail))


def _reason(exc: BaseException) -> str:
    return "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "connection"


def _label(status: int) -> str:
    if status < 400:
        return "success"
    return "upstream_busy" if status in (429, 503) else f"upstream_{status // 100}xx"


def _upstream_headers(request: web.Request) -> dict[str, str]:
    """JSON, and the request's trace identity (``x-request-id``, ``traceparent``)."""
    trace = request.get(appkeys.TRACE)
    return {"Content-Type": "application/json", **(trace.upstream_headers() if trace else {})}


def _down_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() in _HOP_HEADERS}
