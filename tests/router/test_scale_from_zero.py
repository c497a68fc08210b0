"""Scale from zero against a real simulator: a request for a routed pool with no ready
endpoint is held (not 404, not 503) and counted as demand in ``/stats`` and
``/metrics``, then served once discovery brings the pool's first endpoint; held
requests share the queue's bound, time out with 503 and free their place when the
client goes away.

The router runs with Kubernetes discovery whose API server is not there (its watches
fail and retry, which the router survives), so the pool has no pod; the test then does
what discovery does when the pool's first pod turns Ready — it puts the endpoint into
the registry (``tests/integration/test_router_discovery.py`` covers the watches).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gpufleet.ports import free_port
from gpufleet.router import appkeys, discovery, service
from tests.router.peers import MODEL, Sim, chat, serve_router

pytestmark = pytest.mark.slow
URL = "/v1/chat/completions"
POOL = "chat"
Reply = tuple[int, dict[str, Any], dict[str, str]]


def _kubeconfig(directory: Path) -> Path:
    """A kubeconfig for an API server nobody listens at."""
    server = f"http://127.0.0.1:{free_port()}"
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": server}}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    }))  # fmt: skip
    return path


def _config(directory: Path, *, max_in_flight: int = 256, **queue: Any) -> dict[str, Any]:
    kubernetes = {"namespace": "llm", "kubeconfig": str(_kubeconfig(directory)),
                  "source": "pods", "pools": [POOL], "poolModels": {POOL: MODEL}}  # fmt: skip
    return {"kubernetes": kubernetes, "policy": {"pools": [POOL], "admission": {"queue": queue}},
            "limits": {"maxInFlightPerEndpoint": max_in_flight}, "debugHeaders": True,
            "healthCheck": {"intervalSeconds": 0.5}}  # fmt: skip


def _pod_ready(router: service.Router, sim: Sim) -> None:
    """What discovery does when the pool's first pod is Ready."""
    endpoint = discovery.endpoint(
        router.config, url=sim.url, model=MODEL, gpu=sim.gpu, tp=sim.tp, pool=POOL
    )
    router.registry.replace([endpoint])


async def _send(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> Reply:
    async with session.post(url + URL, json=body) as response:
        return response.status, await response.json(), dict(response.headers)


async def _stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats


async def _until(check: Callable[[], Any], *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the router never reached the expected state")
        await asyncio.sleep(0.05)


async def _demand_is(
    session: aiohttp.ClientSession, url: str, *, held: int, queued: int = 0
) -> None:
    async def check() -> bool:
        demand = (await _stats(session, url))["demand"]
        return bool(demand == {POOL: {"queued": queued, "held": held}})

    await _until(check)


async def test_a_held_request_is_served_once_the_pool_has_an_endpoint(
    sims: tuple[Sim, Sim], tmp_path: Path
) -> None:
    fast, _ = sims
    async with serve_router(_config(tmp_path)) as (url, app), aiohttp.ClientSession() as session:
        router = app[appkeys.ROUTER]
        async with session.get(url + "/v1/models") as response:
            assert [m["id"] for m in (await response.json())["data"]] == [MODEL]
        assert (await _stats(session, url))["demand"] == {POOL: {"queued": 0, "held": 0}}
        # Ready with no endpoint at all: the pool's requests are held, so the router must
        # stay in its Service while the pool is at zero.
        async with session.get(url + "/readyz") as response:
            assert response.status == 200, await response.text()
        held = asyncio.create_task(_send(session, url, chat(max_tokens=4)))
        await _demand_is(session, url, held=1)
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        assert f'gpufleet_router_held_requests{{pool="{POOL}"}} 1.0' in text
        assert f'gpufleet_router_queued_requests{{pool="{POOL}"}} 0.0' in text
        unknown, body, _ = await _send(session, url, chat(model="not-served"))
        assert unknown == 404 and body["error"]["code"] == "model_not_found"
        assert not held.done()
        _pod_ready(router, fast)
        status, answer, headers = await held
        assert status == 200 and answer["choices"][0]["message"]["content"]
        assert headers["x-gpufleet-endpoint"] == fast.url
        stats = await _stats(session, url)
    assert stats["demand"] == {POOL: {"queued": 0, "held": 0}}
    assert stats["outcomes"] == {"rejected_404": 1, "success": 1}
    assert stats["queue"]["waiting"] == 0


async def test_a_held_request_times_out_with_503(tmp_path: Path) -> None:
    raw = _config(tmp_path, timeoutSeconds=1)
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        status, body, headers = await _send(session, url, chat())
        stats = await _stats(session, url)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    error = body["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "no_capacity")
    assert f"pool {POOL} has no ready endpoint" in error["message"]
    assert stats["demand"] == {POOL: {"queued": 0, "held": 0}}
    assert stats["queue"]["waiting"] == 0


async def test_a_client_that_goes_away_frees_its_place(
    sims: tuple[Sim, Sim], tmp_path: Path
) -> None:
    fast, _ = sims
    raw = _config(tmp_path, maxSize=1)
    async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
        gone = asyncio.create_task(_send(session, url, chat()))
        await _demand_is(session, url, held=1)
        gone.cancel()  # closes its connection: the router's handler is cancelled
        await asyncio.gather(gone, return_exceptions=True)
        await _demand_is(session, url, held=0)
        # The only place is free again: the next request is held, not refused.
        held = asyncio.create_task(_send(session, url, chat(max_tokens=4)))
        await _demand_is(session, url, held=1)
        _pod_ready(app[appkeys.ROUTER], fast)
        status, _, _ = await held
        stats = await _stats(session, url)
    assert status == 200
    assert stats["outcomes"] == {"cancelled": 1, "success": 1}
    assert stats["queue"]["waiting"] == 0


async def test_held_requests_share_the_queue_bound_and_then_queue_behind_the_first_pod(
    sims: tuple[Sim, Sim], tmp_path: Path
) -> None:
    fast, _ = sims
    fast.faults(slowdown=400)  # a 20-token answer takes ~2 s
    raw = _config(tmp_path, max_in_flight=1, maxSize=2, timeoutSeconds=30)
    async with serve_router(raw) as (url, app), aiohttp.ClientSession() as session:
        held = [asyncio.create_task(_send(session, url, chat(max_tokens=20))) for _ in range(2)]
        await _demand_is(session, url, held=2)
        refused, body, headers = await _send(session, url, chat())
        assert refused == 429 and int(headers["Retry-After"]) >= 1
        assert body["error"]["message"] == "the admission queue is full"
        _pod_ready(app[appkeys.ROUTER], fast)
        # One request takes the pod's only slot; the other waits behind it, queued.
        await _demand_is(session, url, held=0, queued=1)
        results = await asyncio.gather(*held)
        stats = await _stats(session, url)
    assert [status for status, _, _ in results] == [200, 200]
    assert stats["demand"] == {POOL: {"queued": 0, "held": 0}}
    assert stats["outcomes"] == {"rejected_429": 1, "success": 2}
