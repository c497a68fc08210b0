"""Admission against real simulators: tenant quotas keyed on the API key (never on
client headers), the bounded queue (429 when full, 503 after the timeout, lowest
priority shed first), large-request placement and session affinity."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gpufleet.router import appkeys
from tests.router.peers import MODEL, Sim, chat, router_config, serve_router, settled, start_sim

pytestmark = pytest.mark.slow
URL = "/v1/chat/completions"


def _tenants(sim: Sim, **admission: Any) -> dict[str, Any]:
    raw = router_config(
        [sim.backend()],
        admission={
            "tenants": [
                {"name": "small", "apiKeySecretRef": {"name": "s"}, "tokensPerMinute": 600,
                 "maxConcurrentRequests": 1},
                {"name": "big", "apiKeySecretRef": {"name": "b"}},
            ],
            **admission,
        },
    )  # fmt: skip
    raw["apiKeys"] = {"small": {"value": "key-small-000"}, "big": {"value": "key-big-0000"}}
    return raw


async def test_tokens_per_minute_and_concurrency(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(slowdown=10)
    small = {"Authorization": "Bearer key-small-000", "X-Forwarded-For": "10.0.0.1"}
    big = {"Authorization": "Bearer key-big-0000"}
    async with serve_router(_tenants(fast)) as (url, _), aiohttp.ClientSession() as session:

        async def send(headers: dict[str, str], tokens: int = 400) -> tuple[int, str | None]:
            body = chat(max_tokens=tokens)
            async with session.post(url + URL, json=body, headers=headers) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        first, second = await asyncio.gather(send(small), send(small))
        assert sorted([first[0], second[0]]) == [200, 429]  # one in flight at a time
        small_other_ip = {**small, "X-Forwarded-For": "10.9.9.9"}
        status, retry_after = await send(small_other_ip)  # tokens spent: 429 whatever the IP
        assert status == 429 and retry_after is not None and int(retry_after) >= 1
        assert [await send(big, 20) for _ in range(3)] == [(200, None)] * 3
        stats = await settled(url)
    assert stats["outcomes"]["rejected_429"] == 2


async def test_the_quota_is_settled_against_what_a_request_used(sims: tuple[Sim, Sim]) -> None:
    """A request the model server refuses (max_tokens past the context: 400) gives its
    charge back, and one the tenant's whole minute could not hold is charged a minute at
    most: before, it put the tenant ~166 minutes into debt on its own."""
    fast, _ = sims
    small = {"Authorization": "Bearer key-small-000"}
    async with serve_router(_tenants(fast)) as (url, _), aiohttp.ClientSession() as session:

        async def send(tokens: int) -> tuple[int, str | None]:
            async with session.post(url + URL, json=chat(max_tokens=tokens), headers=small) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        assert (await send(100_000))[0] == 400  # refused upstream: the 600 come back
        # Without the settlement the bucket stayed empty: 429 for the next one.
        assert [await send(150) for _ in range(3)] == [(200, None)] * 3
        stats = await settled(url)
    assert stats["outcomes"].get("rejected_429", 0) == 0


def _queued(sim: Sim, **queue: Any) -> dict[str, Any]:
    raw = router_config([sim.backend()], admission={"queue": queue})
    raw["limits"] = {"maxInFlightPerEndpoint": 1}
    return raw


async def test_queue_full_timeout_and_priority(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(slowdown=400)  # a 20-token answer takes ~2 s
    raw = _queued(fast, maxSize=1, timeoutSeconds=30)
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:

        async def send(klass: str, tokens: int = 20) -> int:
            headers = {"x-gpufleet-class": klass}
            async with session.post(url + URL, json=chat(max_tokens=tokens), headers=headers) as r:
                await r.read()
                return r.status

        running = asyncio.create_task(send("batch"))
        await asyncio.sleep(0.3)
        waiting_batch = asyncio.create_task(send("batch"))
        await asyncio.sleep(0.3)
        rejected = await send("batch")  # queue full of equal priority: the newcomer goes
        interactive = asyncio.create_task(send("interactive"))  # sheds the queued batch
        results = await asyncio.gather(running, waiting_batch, interactive)
        assert rejected == 429
        assert results == [200, 429, 200]
        _no_leak(await settled(url))


async def test_queue_timeout_gives_503(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    fast.faults(slowdown=400)
    raw = _queued(fast, maxSize=4, timeoutSeconds=1)
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:

        async def send() -> tuple[int, str | None]:
            async with session.post(url + URL, json=chat(max_tokens=60)) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        results = await asyncio.gather(send(), send())
        assert sorted(s for s, _ in results) == [200, 503]
        assert any(s == 503 and h for s, h in results)
        _no_leak(await settled(url))


async def test_requests_behind_saturated_endpoints_are_queued_demand_of_their_pool(
    sims: tuple[Sim, Sim],
) -> None:
    fast, _ = sims
    fast.faults(slowdown=400)  # a 20-token answer takes ~2 s
    raw = _queued(fast, maxSize=4, timeoutSeconds=30)
    async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
        router = app[appkeys.ROUTER]

        async def send() -> int:
            async with session.post(url + URL, json=chat(max_tokens=20)) as r:
                await r.read()
                return r.status

        sent = [asyncio.create_task(send()) for _ in range(2)]
        for _ in range(200):
            if len(router.gate) == 1:
                break
            await asyncio.sleep(0.02)
        async with session.get(url + "/stats") as r:
            demand = (await r.json())["demand"]
        async with session.get(url + "/metrics") as r:
            text = await r.text()
        assert demand == {"static": {"queued": 1, "held": 0}}  # static backends' pool
        assert 'gpufleet_router_queued_requests{pool="static"} 1.0' in text
        assert 'gpufleet_router_held_requests{pool="static"} 0.0' in text
        assert await asyncio.gather(*sent) == [200, 200]
        stats = await settled(url)
    assert stats["demand"] == {"static": {"queued": 0, "held": 0}}
    _no_leak(stats)


async def test_queued_request_for_a_free_model_is_not_held_behind_a_saturated_one(
    sims: tuple[Sim, Sim],
) -> None:
    fast, _ = sims
    fast.faults(slowdown=400)  # ~0.1 s a token
    small = start_sim("L4", extra=("--model", "llama-3.2-1b"))
    try:
        small.faults(slowdown=400)
        backends = [fast.backend(), {**small.backend(), "model": "llama-3.2-1b"}]
        raw = router_config(backends, admission={"queue": {"timeoutSeconds": 4}})
        raw["limits"] = {"maxInFlightPerEndpoint": 1}
        async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
            router = app[appkeys.ROUTER]

            async def send(model: str, tokens: int) -> int:
                body = chat(max_tokens=tokens, model=model)
                async with session.post(url + URL, json=body) as r:
                    await r.read()
                    return r.status

            async def until(condition: Any) -> None:
                for _ in range(200):
                    if condition():
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError("the router never reached the expected state")

            slots = router.registry.slots
            long_big = asyncio.create_task(send(MODEL, 300))  # holds fast for ~30 s
            await until(lambda: slots[fast.url].in_flight == 1)
            short_small = asyncio.create_task(send("llama-3.2-1b", 3))  # ~0.3 s
            await until(lambda: slots[small.url].in_flight == 1)
            queued_big = asyncio.create_task(send(MODEL, 2))  # the head of the queue
            await until(lambda: len(router.gate) == 1)
            queued_small = asyncio.create_task(send("llama-3.2-1b", 2))  # behind it
            await until(lambda: len(router.gate) == 2)
            assert await short_small == 200
            assert await queued_small == 200
            # Served when small freed up, not once the head ahead of it timed out.
            assert not queued_big.done()
            assert router.stats.outcomes == {"success": 2}
            for task in (long_big, queued_big):
                task.cancel()
            await asyncio.gather(long_big, queued_big, return_exceptions=True)
            _no_leak(await settled(url))
    finally:
        small.stop()


def _no_leak(stats: dict[str, Any]) -> None:
    assert all(e["in_flight"] == 0 and e["pending_tokens"] == 0 for e in stats["endpoints"])
    assert stats["queue"]["waiting"] == 0


async def test_large_requests_go_to_large_tp_and_are_counted(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    big = {**fast.backend(), "gpu": "B200", "tensorParallelSize": 2}  # stands in for a TP-2 B200
    raw = router_config([big, slow.backend()], strategy="cost")
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        long_prompt = "word " * 9000  # ~11k estimated tokens: large_input
        for content, expected in ((long_prompt, fast.url), ("short", None)):
            async with session.post(url + URL, json=chat(content, max_tokens=4)) as r:
                assert r.status == 200
                if expected:
                    assert r.headers["x-gpufleet-endpoint"] == expected
        stats = await settled(url)
    assert stats["routing"]["triggers"]["large_input"] == 1
    assert stats["routing"]["large_percentage"] == 50.0


async def test_session_affinity_sticks(sims: tuple[Sim, Sim]) -> None:
    raw = router_config([s.backend() for s in sims], strategy="cost")
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        seen = set()
        for i in range(6):
            headers = {"x-session-id": "conversation-1"}
            # Later turns resend the conversation, as chat clients do.
            history = " ".join(f"user and assistant turn {t}." for t in range(i + 1))
            body = chat("A conversation. " * 40 + history, max_tokens=4)
            async with session.post(url + URL, json=body, headers=headers) as r:
                assert r.status == 200
                seen.add(r.headers["x-gpufleet-endpoint"])
    assert len(seen) == 1


async def test_a_tenant_may_name_only_its_allowed_classes(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    raw = _tenants(fast, allowedClasses=["interactive"])
    tenants = raw["policy"]["admission"]["tenants"]
    tenants[1] |= {"allowedClasses": ["batch", "interactive"]}  # big
    small = {"Authorization": "Bearer key-small-000"}
    big = {"Authorization": "Bearer key-big-0000"}
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:

        async def send(headers: dict[str, str], klass: str | None) -> tuple[int, Any]:
            named = {"x-gpufleet-class": klass} if klass else {}
            async with session.post(url + URL, json=chat(max_tokens=2),
                                    headers=headers | named) as r:  # fmt: skip
                return r.status, await r.json()

        refused, answer = await send(small, "batch")
        assert [(await send(small, c))[0] for c in ("interactive", None)] == [200, 200]
        assert (await send(big, "batch"))[0] == 200
        anonymous, _ = await send({}, "batch")
    assert (refused, anonymous) == (403, 403)
    error = answer["error"]
    assert error["code"] == "class_not_allowed" and error["param"] == "x-gpufleet-class"
    assert error["message"] == (
        "tenant small may not use request class 'batch' (header x-gpufleet-class); "
        "allowed: interactive"
    )


async def test_without_declared_classes_no_other_name_becomes_a_label(
    sims: tuple[Sim, Sim],
) -> None:
    fast, _ = sims
    raw = router_config([fast.backend()], requestClasses=[])
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        statuses = []
        for klass in ("made-up-1", "made-up-2", "interactive"):
            headers = {"x-gpufleet-class": klass}
            async with session.post(url + URL, json=chat(max_tokens=2), headers=headers) as r:
                statuses.append(r.status)
        async with session.post(url + URL, json=chat(max_tokens=2)) as r:
            statuses.append(r.status)
        async with session.get(url + "/metrics") as r:
            exposition = await r.text()
    assert statuses == [400, 400, 200, 200]
    assert "made-up" not in exposition


def test_a_session_id_is_the_tenants_own() -> None:
    from gpufleet.routing import affinity

    assert affinity.session_key("a", "conv-1") != affinity.session_key("b", "conv-1")
    assert affinity.session_key("a", "conv-1") == affinity.session_key("a", "conv-1")
    assert affinity.session_key("", "x" * 8192) != affinity.session_key("", "x" * 8191)
    assert {len(affinity.session_key("t", "x" * n)) for n in (1, 64, 8192)} == {
        affinity.SESSION_KEY_CHARS
    }
