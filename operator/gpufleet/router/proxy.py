"""One attempt upstream: send a request to one endpoint, read its answer, pass a stream
through to the client chunk by chunk.

``attempt`` knows no router state: it gets the HTTP client session, the ``Target``
(endpoint URL, body, headers), the ``Timeouts`` and an ``Observer``, which it tells
what happens as it happens — the answer (a stream's first chunk, or the whole body),
each chunk passed on, how a stream ended, a client that went away. The request
pipeline (``gpufleet.router.pipeline``) implements the observer and decides from it
what to retry and what to count (``gpufleet.routing.verdicts``).

Before anything reaches the client an attempt may fail (``NoAnswer``: connect error,
connect, first-byte or request timeout, a stream that ended before its first chunk),
and the observer may refuse an answer (raising from ``Observer.answered``, as for a 5xx
to retry elsewhere); the upstream connection is closed either way. Once a stream's
first chunk is written the request is committed: an upstream failure then ends the
client's SSE stream with an error event and no ``[DONE]``.

Three of the four timeouts (``failureHandling``) apply here, each on its own clock;
the fourth, ``requestTimeoutSeconds``, is the ``deadline`` that also bounds them:

- ``connectTimeoutSeconds``: one TCP connect to the endpoint;
- ``firstByteTimeoutSeconds``: from sending to the first chunk of a stream (or the whole
  body of an answer that is not streamed);
- ``chunkIdleTimeoutSeconds``: silence between two chunks; the stream ends with an
  error event.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Mapping
from typing import Protocol

import aiohttp
from aiohttp import web

from gpufleet.router.errors import RouterError, UpstreamFailed, UpstreamTimeout
from gpufleet.routing import verdicts

_HOP_HEADERS = {"content-type", "content-encoding", "x-request-id", "openai-processing-ms"}
# A stream's last reads kept for its usage event (the last before [DONE]; one read may
# hold a part of it, the next the rest and [DONE]).
_TAIL_CHUNKS = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where and what to send: ``url`` (the endpoint and the client's path), the body,
    the request headers, whether the client asked for a stream, and headers to add to a
    stream's answer (which leave before the caller sees it)."""

    url: str
    payload: bytes
    headers: Mapping[str, str]
    stream: bool
    stream_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per connect, to the first byte, between chunks, and for the whole
    request, whose ``deadline`` (event-loop time) bounds every other."""

    connect_s: float
    first_byte_s: float
    idle_s: float
    request_s: float
    deadline: float

    def request_timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"the request did not finish within requestTimeoutSeconds ({self.request_s}s)"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream that reached the client ended: ``kind``, the SSE events after its
    first chunk's, its last reads (the first chunk first), and the error event it ends
    with (None when the upstream finished it)."""

    kind: verdicts.StreamEnd
    events: int
    tail: tuple[bytes, ...] = ()
    error: RouterError | None = None


class NoAnswer(Exception):
    """An attempt that got no answer the client could be given; ``kind`` says why
    (``verdicts.failure``), ``error`` what the client is told if nothing else serves."""

    def __init__(self, kind: verdicts.Failure, error: RouterError) -> None:
        super().__init__(error.message)
        self.kind, self.error = kind, error


class Observer(Protocol):
    """What an attempt tells its caller, in order: ``answered`` once (it may raise to
    refuse the answer: nothing has reached the client yet); for a stream ``sending``
    once its headers are out, ``passed`` for each chunk written (the first included),
    then ``ended``, or ``left`` when the client went away before the stream ended."""

    def answered(self, status: int, body: bytes, *, streaming: bool) -> None: ...

    def sending(self, status: int) -> None: ...

    def passed(self, chunk: bytes) -> None: ...

    def ended(self, end: StreamEnd) -> None: ...

    def left(self) -> None: ...


async def attempt(
    http: aiohttp.ClientSession,
    target: Target,
    *,
    timeouts: Timeouts,
    client: web.Request,
    observer: Observer,
) -> web.StreamResponse:
    """The client's answer from one endpoint; ``NoAnswer`` before the first byte."""
    upstream, first = await _open(http, target, timeouts)
    try:
        streaming = target.stream and upstream.status == 200
        observer.answered(upstream.status, first, streaming=streaming)
        if streaming:
            return await _stream(
                upstream, first, target=target, timeouts=timeouts, client=client, observer=observer
            )
        return web.Response(body=first, status=upstream.status, headers=_down_headers(upstream))
    finally:
        upstream.close()


async def _open(
    http: aiohttp.ClientSession, target: Target, timeouts: Timeouts
) -> tuple[aiohttp.ClientResponse, bytes]:
    """The answer and its first chunk (its whole body when not a stream), within the
    first-byte timeout and the deadline; ``NoAnswer`` otherwise."""
    loop = asyncio.get_running_loop()
    first_byte_at = loop.time() + timeouts.first_byte_s
    try:
        async with asyncio.timeout_at(min(first_byte_at, timeouts.deadline)):
            return await _send(http, target, timeouts)
    except aiohttp.ConnectionTimeoutError:
        raise NoAnswer("connect_timeout", _connect_timeout(timeouts)) from None
    except TimeoutError:
        if first_byte_at >= timeouts.deadline:  # the request's own limit came first
            raise NoAnswer("request_timeout", timeouts.request_timeout()) from None
        raise NoAnswer("first_byte_timeout", _first_byte_timeout(timeouts)) from None
    except (aiohttp.ClientError, OSError) as exc:
        error = UpstreamFailed("could not reach a model server")
        raise NoAnswer(_reason(exc), error) from exc


async def _send(
    http: aiohttp.ClientSession, target: Target, timeouts: Timeouts
) -> tuple[aiohttp.ClientResponse, bytes]:
    """Send the request and read its first chunk; the response is closed if that fails.

    A timeout or a broken connection can strike between the headers and the first
    chunk; the connection must then go back closed, not leak to the garbage collector.
    """
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s)
    upstream = await http.post(
        target.url, data=target.payload, headers=target.headers, timeout=timeout
    )
    try:
        return upstream, await _first_chunk(upstream, target.stream)
    except BaseException:
        upstream.close()
        raise


async def _first_chunk(upstream: aiohttp.ClientResponse, stream: bool) -> bytes:
    """The whole body, or for a 200 stream its first chunk (b'' if it ended at once)."""
    if stream and upstream.status == 200:
        return await upstream.content.readany()
    return await upstream.read()


def _connect_timeout(timeouts: Timeouts) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"could not connect to a model server within connectTimeoutSeconds ({timeouts.connect_s}s)"
    )


def _first_byte_timeout(timeouts: Timeouts) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"the model server sent nothing within firstByteTimeoutSeconds ({timeouts.first_byte_s}s)"
    )


async def _stream(
    upstream: aiohttp.ClientResponse,
    first: bytes,
    *,
    target: Target,
    timeouts: Timeouts,
    client: web.Request,
    observer: Observer,
) -> web.StreamResponse:
    if not first:
        raise NoAnswer("empty", UpstreamFailed("the model server ended the stream at once"))
    response = web.StreamResponse(status=200, headers=_down_headers(upstream))
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(target.stream_headers)
    finished = False
    try:
        await response.prepare(client)
        observer.sending(response.status)
        await response.write(first)
        observer.passed(first)
        end = await _pump(upstream, response, first=first, timeouts=timeouts, observer=observer)
        finished = end.error is None
        observer.ended(end)
        if end.error is not None:
            await response.write(end.error.sse_event())
        await response.write_eof()
    except ConnectionResetError:
        # The client went away; if the upstream had finished, it had everything
        # (clients often close right after [DONE], before the chunked terminator).
        if not finished:
            observer.left()
    return response


async def _pump(
    upstream: aiohttp.ClientResponse,
    response: web.StreamResponse,
    *,
    first: bytes,
    timeouts: Timeouts,
    observer: Observer,
) -> StreamEnd:
    """Copy chunks until the upstream ends, goes quiet for the idle timeout, or the
    request reaches its deadline (loop time)."""
    idle, deadline = timeouts.idle_s, timeouts.deadline
    loop = asyncio.get_running_loop()
    events = first.count(b"data:")
    tail: collections.deque[bytes] = collections.deque(maxlen=_TAIL_CHUNKS)
    try:
        async with asyncio.timeout_at(min(loop.time() + idle, deadline)) as limit:
            while chunk := await upstream.content.readany():
                # A client that went away raises here (ConnectionResetError) and ends
                # the request; the caller's finally closes the upstream connection.
                await response.write(chunk)
                tail.append(chunk)
                events += chunk.count(b"data:")
                observer.passed(chunk)
                limit.reschedule(min(loop.time() + idle, deadline))
    except TimeoutError:
        if loop.time() >= deadline:
            return StreamEnd("request_timeout", events, error=timeouts.request_timeout())
        message = f"the model server sent nothing for chunkIdleTimeoutSeconds ({idle}s)"
        return StreamEnd("idle_timeout", events, error=UpstreamTimeout(message))
    except aiohttp.ClientPayloadError:
        return StreamEnd("broken", events, error=_broke_off())
    if not upstream.content.at_eof():
        return StreamEnd("broken", events, error=_broke_off())
    return StreamEnd("finished", events, (first, *tail))


def _broke_off() -> UpstreamFailed:
    return UpstreamFailed("the model server's stream broke off")


def _reason(exc: BaseException) -> verdicts.Failure:
    return "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "connection"


def _down_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() in _HOP_HEADERS}
