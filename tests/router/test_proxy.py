"""Proxying against real simulator processes: the openai client (streaming too),
retries before the first byte only, timeouts, mid-stream failures, client cancel,
circuit breaking, and accounting that never leaks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from gpufleet.router import appkeys
from tests.router.peers import (
    MODEL,
    Sim,
    chat,
    free_port,
    router_config,
    serve_router,
    settled,
    start_sim,
    stream_events,
)

pytestmark = pytest.mark.slow


def _no_leak(stats: dict[str, Any]) -> None:
    for endpoint in stats["endpoints"]:
        assert endpoint["in_flight"] == 0, endpoint
        assert endpoint["pending_tokens"] == 0, endpoint
        assert endpoint["prefill_tokens"] == endpoint["kv_tokens"] == 0, endpoint


async def test_openai_client_streaming_and_not(sims: tuple[Sim, Sim]) -> None:
    backends = [s.backend() for s in sims]
    async with serve_router(router_config(backends)) as (url, _):
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        try:
            assert [m.id async for m in client.models.list()] == [MODEL]
            reply = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=6
            )
            assert reply.usage is not None and reply.usage.completion_tokens == 6
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            pieces, usage = [], None
            async for chunk in stream:
                pieces += [c.delta.content for c in chunk.choices if c.delta.content]
                usage = chunk.usage or usage
            assert len(pieces) == 5 and usage is not None and usage.completion_tokens == 5
            completion = await client.completions.create(model=MODEL, prompt="abc", max_tokens=3)
            assert completion.choices[0].finish_reason == "length"
        finally:
            await client.close()
        _no_leak(await settled(url))


async def test_stream_is_passed_through_unbuffered(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(slowdown=200)  # ~ a token every 0.1 s at speed 20
    async with serve_router(router_config([fast.backend()])) as (url, _):
        async with aiohttp.ClientSession() as session:
            body = chat(max_tokens=6, stream=True)
            async with session.post(url + "/v1/chat/completions", json=body) as r:
                loop = asyncio.get_running_loop()
                stamps = []
                async for raw in r.content:
                    if raw.startswith(b"data: "):
                        stamps.append(loop.time())
        assert len(stamps) == 8  # role, 6 tokens, [DONE]
        assert stamps[-1] - stamps[1] > 0.2  # chunks arrived spread out, not in one burst


async def test_connect_error_is_retried_and_unhealthy_endpoint_dropped(
    sims: tuple[Sim, Sim],
) -> None:
    fast, _ = sims
    dead = {"url": f"http://127.0.0.1:{free_port()}", "model": MODEL, "gpu": "B200"}
    raw = router_config([dead, fast.backend()], strategy="round-robin")
    raw["healthCheck"] = {"intervalSeconds": 300}
    async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
        slot = app[appkeys.ROUTER].registry.slots[dead["url"]]
        for _ in range(100):  # the first probe marks it unhealthy; the next is 300 s away
            if not slot.healthy:
                break
            await asyncio.sleep(0.05)
        slot.healthy = True  # as if it had passed its probe: requests do reach it
        for _ in range(4):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 200
                assert r.headers["x-gpufleet-endpoint"] == fast.url
        stats = await settled(url)
    assert stats["retries"] >= 1
    assert stats["outcomes"] == {"success": 4}
    _no_leak(stats)


async def test_retry_budget_refills_with_traffic(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    dead = {"url": f"http://127.0.0.1:{free_port()}", "model": MODEL, "gpu": "B200"}
    raw = router_config(
        [dead, fast.backend(), slow.backend()],
        strategy="round-robin",
        failureHandling={"circuitBreaker": {"consecutiveFailures": 1000},
                         "retries": {"backoffMillis": 0}},
    )  # fmt: skip
    raw["healthCheck"] = {"intervalSeconds": 300}
    async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
        slot = app[appkeys.ROUTER].registry.slots[dead["url"]]
        statuses = []
        for i in range(80):
            # Healthy traffic first; then the dead endpoint is back in rotation (as if
            # it had passed its probe) and about every other request is retried.
            slot.healthy = i >= 40
            async with session.post(url + "/v1/chat/completions", json=chat(max_tokens=2)) as r:
                statuses.append(r.status)
        stats = await settled(url)
    assert statuses == [200] * 80
    assert stats["retries"] > 10  # more than a fixed allowance of 10 would allow
    _no_leak(stats)


async def test_breaker_opens_and_stops_traffic(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(error_rate=1.0)
    raw = router_config(
        [fast.backend(), slow.backend()],
        strategy="least-request",
        failureHandling={"circuitBreaker": {"consecutiveFailures": 2, "openSeconds": 60},
                         "retries": {"backoffMillis": 0}},
    )  # fmt: skip
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(8):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 200
                assert r.headers["x-gpufleet-endpoint"] == slow.url
        stats = await settled(url)
    states = {e["id"]: e["circuit"] for e in stats["endpoints"]}
    assert states == {fast.url: "open", slow.url: "closed"}
    assert stats["retries"] == 2  # two failures opened the circuit; no request after
    _no_leak(stats)


async def test_half_open_probe_cancelled_by_its_client_is_given_back(
    sims: tuple[Sim, Sim],
) -> None:
    fast, slow = sims
    fast.faults(error_rate=1.0)
    raw = router_config(
        [fast.backend(), slow.backend()],
        strategy="round-robin",
        failureHandling={"circuitBreaker": {"consecutiveFailures": 1, "openSeconds": 1},
                         "retries": {"backoffMillis": 0}},
    )  # fmt: skip
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(2):  # one of them fails on fast and opens its circuit
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 200
        fast.faults(hang_s=30)
        await asyncio.sleep(1.2)  # half-open: one probe allowed
        impatient = aiohttp.ClientTimeout(total=0.5)
        for _ in range(2):  # the one that lands on fast is the probe; its client gives up
            try:
                async with session.post(
                    url + "/v1/chat/completions", json=chat(), timeout=impatient
                ) as r:
                    await r.read()
            except TimeoutError:
                pass
        assert (await settled(url))["outcomes"].get("cancelled") == 1
        fast.faults()
        served = []
        for _ in range(4):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                served.append(r.headers["x-gpufleet-endpoint"])
        stats = await settled(url)
    assert fast.url in served  # the probe slot came back: fast is tried and closes again
    assert {e["id"]: e["circuit"] for e in stats["endpoints"]}[fast.url] == "closed"
    _no_leak(stats)


async def test_request_every_endpoint_fails_opens_no_breaker(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    for sim in sims:
        sim.faults(error_rate=1.0)  # as a request every engine answers 500 to
    raw = router_config(
        [fast.backend(), slow.backend()],
        failureHandling={"circuitBreaker": {"consecutiveFailures": 2, "openSeconds": 60},
                         "retries": {"backoffMillis": 0}},
    )  # fmt: skip
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 502
        stats = await settled(url)
    assert {e["circuit"] for e in stats["endpoints"]} == {"closed"}
    assert stats["retries"] == 3  # each was still tried on the other endpoint
    _no_leak(stats)


async def test_5xx_is_retried_elsewhere_4xx_is_not(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(error_rate=1.0)
    raw = router_config([fast.backend(), slow.backend()], strategy="round-robin")
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(4):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 200
                assert r.headers["x-gpufleet-endpoint"] == slow.url
        retried = (await settled(url))["retries"]
        assert retried >= 1
        fast.faults()
        too_long = chat(max_tokens=16384)  # beyond the context window: the engine's 400
        for _ in range(2):
            async with session.post(url + "/v1/chat/completions", json=too_long) as r:
                assert r.status == 400
                assert "context" in (await r.text()).lower()
        stats = await settled(url)
    assert stats["retries"] == retried
    _no_leak(stats)


async def test_first_byte_timeout_retries(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(hang_s=30)
    raw = router_config(
        [fast.backend(), slow.backend()],
        strategy="round-robin",
        failureHandling={"firstByteTimeoutSeconds": 1, "retries": {"backoffMillis": 0}},
    )
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(url + "/v1/chat/completions", json=chat()) as r:
                assert r.status == 200 and r.headers["x-gpufleet-endpoint"] == slow.url
        _no_leak(await settled(url))


async def test_all_failing_gives_upstream_error(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(error_rate=1.0)
    slow.faults(error_rate=1.0)
    raw = router_config([fast.backend(), slow.backend()], failureHandling={"retries": {
        "maxRetries": 5, "backoffMillis": 0}})  # fmt: skip
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=chat()) as r:
            assert r.status == 502  # both tried once, then the last failure is reported
            assert (await r.json())["error"]["type"] == "upstream_error"
        stats = await settled(url)
    assert stats["retries"] == 1
    _no_leak(stats)


async def test_stream_dying_before_first_chunk_is_retried(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(die_after_chunks=0)
    raw = router_config([fast.backend(), slow.backend()], strategy="round-robin")
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(url + "/v1/chat/completions", json=chat(stream=True)) as r:
                events = await stream_events(r)
            assert events[-1] == b"[DONE]"
        _no_leak(await settled(url))


async def test_mid_stream_failure_ends_with_error_event(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(die_after_chunks=3)
    async with serve_router(router_config([fast.backend()])) as (url, _):
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/chat/completions", json=chat(stream=True)) as r,
        ):
            assert r.status == 200
            events = await stream_events(r)
        stats = await settled(url)
    assert b"[DONE]" not in events
    assert json.loads(events[-1])["error"]["type"] == "upstream_error"
    assert len(events) == 4  # three chunks passed through, then the error
    assert stats["outcomes"] == {"upstream_error_mid_stream": 1}
    _no_leak(stats)


async def test_streams_breaking_mid_way_open_the_breaker(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    fast.faults(die_after_chunks=5)
    raw = router_config(
        [fast.backend(), slow.backend()],
        strategy="round-robin",
        failureHandling={"circuitBreaker": {"consecutiveFailures": 2, "openSeconds": 60}},
    )
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        served = []
        for _ in range(12):
            body = chat(max_tokens=10, stream=True)
            async with session.post(url + "/v1/chat/completions", json=body) as r:
                await stream_events(r)
                served.append(r.headers["x-gpufleet-endpoint"])
        stats = await settled(url)
    states = {e["id"]: e["circuit"] for e in stats["endpoints"]}
    assert states == {fast.url: "open", slow.url: "closed"}
    assert served.count(fast.url) == 2  # two broken streams, then no more
    assert stats["outcomes"] == {"upstream_error_mid_stream": 2, "success": 10}
    _no_leak(stats)


async def test_fallback_model_is_named_in_the_forwarded_body() -> None:
    small = start_sim("L4", extra=("--model", "llama-3.2-1b"))
    try:
        dead = {"url": f"http://127.0.0.1:{free_port()}", "model": MODEL, "gpu": "B200"}
        backends = [dead, {**small.backend(), "model": "llama-3.2-1b"}]
        raw = router_config(backends, failureHandling={"fallbackModel": "llama-3.2-1b"})
        async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
            slot = app[appkeys.ROUTER].registry.slots[dead["url"]]
            for _ in range(100):  # its health probe fails: no endpoint for MODEL
                if not slot.healthy:
                    break
                await asyncio.sleep(0.05)
            assert not slot.healthy
            for stream in (False, True):
                body = chat(max_tokens=3, stream=stream)
                async with session.post(url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200, await r.text()
                    assert r.headers["x-gpufleet-endpoint"] == small.url
                    text = await r.text()
                assert '"model": "llama-3.2-1b"' in text or '"model":"llama-3.2-1b"' in text
            _no_leak(await settled(url))
    finally:
        small.stop()


async def test_chunk_idle_timeout() -> None:
    real_time = start_sim("H100-80GB", speed=1.0)
    try:
        raw = router_config([real_time.backend()], failureHandling={"chunkIdleTimeoutSeconds": 1})
        async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
            body = chat(max_tokens=500, stream=True)
            async with session.post(url + "/v1/chat/completions", json=body) as r:
                first = await r.content.readline()
                assert first.startswith(b"data: ")
                real_time.faults(slowdown=1000)  # a decode step now takes seconds
                events = await stream_events(r)
            assert b"[DONE]" not in events
            assert json.loads(events[-1])["error"]["type"] == "upstream_timeout"
            _no_leak(await settled(url))
    finally:
        real_time.stop()


async def test_client_cancel_releases_everything(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(slowdown=100)
    async with (
        serve_router(router_config([fast.backend()])) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        for _ in range(3):
            body = chat(max_tokens=500, stream=True)
            async with session.post(url + "/v1/chat/completions", json=body) as r:
                await r.content.readline()
                r.close()  # the client goes away mid-stream
        stats = await settled(url)
        _no_leak(stats)
        assert stats["outcomes"].get("cancelled") == 3
        running = await _sim_running(session, fast)
    assert running == 0  # the upstream requests were cancelled too


async def _sim_running(session: aiohttp.ClientSession, sim: Sim) -> float:
    for _ in range(100):
        async with session.get(sim.url + "/metrics") as r:
            text = await r.text()
        line = next(x for x in text.splitlines() if x.startswith("vllm:num_requests_running"))
        value = float(line.rsplit(" ", 1)[1])
        if value == 0:
            return value
        await asyncio.sleep(0.05)
    return value


async def test_concurrent_mixed_traffic_balances_and_never_leaks(sims: tuple[Sim, Sim]) -> None:
    raw = router_config([s.backend() for s in sims], strategy="cost")
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            body = chat(f"request {i} " * (1 + i % 7), max_tokens=4 + i % 9, stream=i % 2 == 0)
            async with session.post(url + "/v1/chat/completions", json=body) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(40)))
        stats = await settled(url)
        async with session.get(url + "/metrics") as r:
            exposition = await r.text()
    assert statuses == [200] * 40
    _no_leak(stats)
    assert stats["total_requests"] == 40
    assert sum(g["requests"] for g in stats["generations"].values()) == 40
    assert "gpufleet_router_requests_total{" in exposition
    assert "gpufleet_router_pending_tokens{" in exposition
    assert "gpufleet_router_signals_stale 1.0" in exposition
