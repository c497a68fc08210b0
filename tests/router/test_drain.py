"""``gpufleet router`` stopping: SIGTERM makes ``/readyz`` answer 503 at once while the
requests in flight finish; ``drainSeconds`` bounds the whole stop, and a stream it cuts
ends with an SSE error event (a request not yet answered gets a 503).

Real processes: the router and a simulator slowed down so requests outlive the signal.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.router.peers import Sim, chat, router_config, start_sim, stream_events
from tests.router.routerproc import RouterProcess, start_router

pytestmark = pytest.mark.slow
TOKEN_S = 0.007  # one decode step of the simulated H100 at speed 1 (measured, about)


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[Sim]:
    sim = start_sim("H100-80GB", speed=1.0)
    try:
        yield sim
    finally:
        sim.stop()


def _router(sim: Sim, tmp_path: Path, drain_s: float) -> RouterProcess:
    raw = router_config([sim.backend()])
    raw["drainSeconds"] = drain_s
    return start_router(raw, tmp_path)


def _tokens(seconds: float) -> int:
    return int(seconds / TOKEN_S)


async def _readyz_turns_503(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    """/readyz polled right after the signal: 503 within a second, never refused."""
    deadline = time.monotonic() + 1.0
    while True:
        async with session.get(url + "/readyz") as response:
            document: dict[str, object] = await response.json()
            if response.status == 503:
                return document
        assert time.monotonic() < deadline, "/readyz still 200 a second after SIGTERM"
        await asyncio.sleep(0.02)


async def test_sigterm_turns_readyz_503_and_lets_requests_finish(
    slow_sim: Sim, tmp_path: Path
) -> None:
    router = _router(slow_sim, tmp_path, drain_s=8)
    try:
        async with aiohttp.ClientSession() as session:
            url = router.url + "/v1/chat/completions"
            long_stream = chat(max_tokens=_tokens(1.5), stream=True, ignore_eos=True)
            stream = await session.post(url, json=long_stream)
            assert stream.status == 200
            await stream.content.readline()  # the stream is under way
            whole = asyncio.ensure_future(
                session.post(url, json=chat(max_tokens=_tokens(1.0), ignore_eos=True))
            )
            await asyncio.sleep(0.2)
            sent_at = router.terminate()
            ready = await _readyz_turns_503(session, router.url)
            assert ready["draining"] is True
            events = await stream_events(stream)
            answer = await whole
            assert answer.status == 200
            assert (await answer.json())["usage"]["completion_tokens"] == _tokens(1.0)
        assert events[-1] == b"[DONE]"
        assert await asyncio.to_thread(router.proc.wait, 10) == 0
        # It stops once nothing is in flight, long before drainSeconds (8 s).
        assert time.monotonic() - sent_at < 5
        assert "Traceback" not in router.log()
    finally:
        router.stop()


async def test_drain_seconds_bounds_the_stop_and_a_cut_stream_ends_with_an_error_event(
    slow_sim: Sim, tmp_path: Path
) -> None:
    drain_s = 2.0
    router = _router(slow_sim, tmp_path, drain_s=drain_s)
    try:
        async with aiohttp.ClientSession() as session:
            url = router.url + "/v1/chat/completions"
            endless = chat(max_tokens=_tokens(20), stream=True, ignore_eos=True)
            stream = await session.post(url, json=endless)
            assert stream.status == 200
            await stream.content.readline()
            whole = asyncio.ensure_future(
                session.post(url, json=chat(max_tokens=_tokens(20), ignore_eos=True))
            )
            await asyncio.sleep(0.2)
            sent_at = router.terminate()
            events = await stream_events(stream)
            answer = await whole
            assert answer.status == 503
            error = (await answer.json())["error"]
            assert error["type"] == "service_unavailable"
            assert "drainSeconds" in error["message"]
        assert b"[DONE]" not in events
        last = json.loads(events[-1])
        assert last["error"]["type"] == "service_unavailable"
        assert "drainSeconds" in last["error"]["message"]
        assert await asyncio.to_thread(router.proc.wait, 10) == 0
        stopped_after = time.monotonic() - sent_at
        # Bounded by drainSeconds (aiohttp's own shutdown took up to twice that); the
        # margin is for a loaded test machine, not for the router.
        assert stopped_after < drain_s + 1.0, stopped_after
        assert "Traceback" not in router.log()
    finally:
        router.stop()
