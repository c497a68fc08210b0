"""The router's four timeouts against in-process upstreams that are slow on purpose.

Each fires on its own clock with its documented answer: connect and first-byte
timeouts are retried on another endpoint and answer 504 when none is left; the whole
request's timeout answers 504 before the first byte (never retried) and ends a stream
with an OpenAI-shaped error event after it; the idle timeout ends a stream that goes
quiet. No timeout counts as a success on the endpoint's breaker; only the request
timeout is charged to no endpoint (``breaker.failures`` tells which).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpufleet.ports import free_port
from gpufleet.router import appkeys
from tests.router.peers import MODEL, chat, router_config, serve_router, settled, stream_events

pytestmark = pytest.mark.slow

CHUNK = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'


@dataclasses.dataclass
class Behaviour:
    """What the upstream does with a chat request."""

    hang_s: float = 0.0  # before the response headers (and the first chunk)
    gap_s: float = 0.0  # between two chunks of a stream
    chunks: int = 3
    stall_after: int | None = None  # chunks sent before the stream goes silent


BEHAVIOUR = web.AppKey("behaviour", Behaviour)


async def _chat(request: web.Request) -> web.StreamResponse:
    how = request.app[BEHAVIOUR]
    body = await request.json()
    await asyncio.sleep(how.hang_s)
    if not body.get("stream"):
        return web.json_response({"object": "chat.completion", "model": MODEL, "choices": []})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for sent in range(how.chunks):
        if how.stall_after is not None and sent >= how.stall_after:
            await asyncio.sleep(3600)
        await response.write(CHUNK)
        await asyncio.sleep(how.gap_s)
    await response.write(b"data: [DONE]\n\n")
    return response


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@contextlib.asynccontextmanager
async def upstream(how: Behaviour) -> AsyncIterator[str]:
    """An OpenAI-shaped upstream on loopback behaving as ``how`` says."""
    application = web.Application()
    application[BEHAVIOUR] = how
    application.router.add_get("/health", _health)
    application.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(
        application, handler_cancellation=True, access_log=None, shutdown_timeout=0.1
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a connect
    neither succeeds nor fails until the connecting side gives up."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        filler.close()
        listener.close()


def backend(url: str) -> dict[str, object]:
    return {"url": url, "model": MODEL, "gpu": "H100-80GB"}


def config(urls: list[str], **failure_handling: Any) -> dict[str, Any]:
    policy = {"retries": {"backoffMillis": 0}, **failure_handling}
    raw = router_config([backend(u) for u in urls], strategy="round-robin", failureHandling=policy)
    # One slow health probe: the endpoints stay healthy for the test's length, so what
    # is tested is the request path's own timeouts, not the health check's.
    raw["healthCheck"] = {"intervalSeconds": 60, "timeoutSeconds": 30}
    return raw


def failures(application: web.Application, url: str) -> int:
    return application[appkeys.ROUTER].registry.slots[url].breaker.failures


def preset_failures(application: web.Application, url: str, count: int) -> None:
    """A breaker a success would reset to 0 and a failure raise: counts tell which."""
    application[appkeys.ROUTER].registry.slots[url].breaker.failures = count


async def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=body) as response,
    ):
        return response.status, await response.json()


async def stream(url: str) -> tuple[int, list[bytes]]:
    async with aiohttp.ClientSession() as session:
        body = chat(stream=True)
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            return response.status, await stream_events(response)


async def test_connect_timeout_is_retried_elsewhere_then_answers_504() -> None:
    with black_hole() as hole:
        async with upstream(Behaviour()) as good:
            raw = config([hole, good], connectTimeoutSeconds=1, firstByteTimeoutSeconds=30)
            async with serve_router(raw) as (url, application):
                for _ in range(2):  # round robin: one or both try the black hole first
                    status, _ = await post(url, chat())
                    assert status == 200
                assert failures(application, hole) >= 1 and failures(application, good) == 0
        async with serve_router(config([hole], connectTimeoutSeconds=1)) as (url, application):
            status, answer = await post(url, chat())
            assert status == 504
            assert answer["error"]["type"] == "upstream_timeout"
            assert "connectTimeoutSeconds (1s)" in answer["error"]["message"]
            assert failures(application, hole) == 1


async def test_first_byte_timeout_answers_504_and_is_a_failure() -> None:
    async with upstream(Behaviour(hang_s=5)) as slow:
        raw = config([slow], firstByteTimeoutSeconds=1, retries={"maxRetries": 0})
        async with serve_router(raw) as (url, application):
            preset_failures(application, slow, 2)
            status, answer = await post(url, chat())
            assert status == 504
            assert answer["error"]["type"] == "upstream_timeout"
            assert "firstByteTimeoutSeconds (1s)" in answer["error"]["message"]
            assert failures(application, slow) == 3
            stats = await settled(url)
    assert stats["outcomes"] == {"rejected_504": 1}


async def test_request_timeout_before_first_byte_is_not_retried_nor_charged() -> None:
    async with upstream(Behaviour(hang_s=5)) as one, upstream(Behaviour(hang_s=5)) as two:
        retries = {"maxRetries": 3, "backoffMillis": 0}
        raw = config([one, two], requestTimeoutSeconds=1, connectTimeoutSeconds=1,
                     firstByteTimeoutSeconds=30, retries=retries)  # fmt: skip
        async with serve_router(raw) as (url, application):
            preset_failures(application, one, 2)
            preset_failures(application, two, 2)
            status, answer = await post(url, chat())
            assert status == 504
            assert "requestTimeoutSeconds (1s)" in answer["error"]["message"]
            assert (failures(application, one), failures(application, two)) == (2, 2)
            stats = await settled(url)
    assert stats["retries"] == 0
    assert all(e["in_flight"] == 0 for e in stats["endpoints"])


async def test_request_timeout_ends_a_stream_with_an_error_event() -> None:
    async with upstream(Behaviour(gap_s=0.1, chunks=100)) as steady:  # 10 s of chunks
        raw = config([steady], requestTimeoutSeconds=1, connectTimeoutSeconds=1,
                     chunkIdleTimeoutSeconds=30)  # fmt: skip
        async with serve_router(raw) as (url, application):
            preset_failures(application, steady, 2)
            status, events = await stream(url)
            assert status == 200  # the stream had begun
            assert 1 < len(events) < 100 and b"[DONE]" not in events
            error = json.loads(events[-1])["error"]
            assert error["type"] == "upstream_timeout"
            assert "requestTimeoutSeconds (1s)" in error["message"]
            assert failures(application, steady) == 2  # neither success nor failure
            stats = await settled(url)
    assert stats["outcomes"] == {"request_timeout_mid_stream": 1}


async def test_chunk_idle_timeout_ends_a_stream_and_is_a_failure() -> None:
    async with upstream(Behaviour(chunks=10, stall_after=2)) as stalling:
        raw = config([stalling], chunkIdleTimeoutSeconds=1, requestTimeoutSeconds=600)
        async with serve_router(raw) as (url, application):
            status, events = await stream(url)
            assert status == 200 and b"[DONE]" not in events
            error = json.loads(events[-1])["error"]
            assert error["type"] == "upstream_timeout"
            assert "chunkIdleTimeoutSeconds (1s)" in error["message"]
            assert failures(application, stalling) == 1


async def test_first_byte_timeout_does_not_cut_a_stream_that_has_begun() -> None:
    async with upstream(Behaviour(gap_s=0.4, chunks=5)) as steady:  # 2 s, a chunk per 0.4 s
        raw = config([steady], firstByteTimeoutSeconds=1, chunkIdleTimeoutSeconds=1)
        async with serve_router(raw) as (url, application):
            preset_failures(application, steady, 2)
            status, events = await stream(url)
            assert status == 200 and events[-1] == b"[DONE]" and len(events) == 6
            assert failures(application, steady) == 0  # a finished stream is a success
