"""Spillover tiers against real simulators: requests fill the first tier up to its
saturation, then the next; with every tier saturated the fallback model serves, and
without one any endpoint with room; /stats shows each tier's utilisation, which tier
serves, and the requests per tier and to the fallback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.router.peers import Sim, chat, router_config, serve_router, settled, start_sim

SMALL = "llama-3.2-1b"


def _config(backends: list[dict[str, object]], **policy: Any) -> dict[str, Any]:
    # Two request slots per endpoint: one stream in flight is 50 % utilisation.
    tiers = [
        {"generations": ["H100-80GB"], "saturationPercent": 50},
        {"generations": ["A100-40GB"], "saturationPercent": 50},
    ]
    raw = router_config(backends, strategy="least-request", spillover={"tiers": tiers}, **policy)
    return raw | {"limits": {"maxInFlightPerEndpoint": 2}}


@contextlib.asynccontextmanager
async def _held(session: aiohttp.ClientSession, url: str) -> AsyncIterator[str]:
    """A slow stream held open after its first chunk; yields the GPU that serves it."""
    body = chat(max_tokens=200, stream=True)
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200
        await response.content.readline()
        yield response.headers["x-gpufleet-gpu"]


async def _gpu(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with session.post(url + "/v1/chat/completions", json=chat(max_tokens=2)) as response:
        assert response.status == 200, await response.text()
        return response.headers["x-gpufleet-gpu"], response.headers["x-gpufleet-endpoint"]


async def _stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/stats") as response:
        document: dict[str, Any] = await response.json()
        return document


async def _tier_metric(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, ...], float]:
    """``gpufleet_router_tier_requests_total`` by (model, tier, fallback)."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    return {
        (s.labels["model"], s.labels["tier"], s.labels["fallback"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gpufleet_router_tier_requests_total"
    }


async def test_requests_fill_the_first_tier_then_spill(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    for sim in sims:
        sim.faults(slowdown=1000)  # a token takes about a third of a second: streams stay
    config = _config([fast.backend(), slow.backend()])
    async with serve_router(config) as (url, _), aiohttp.ClientSession() as session:
        async with _held(session, url) as first:
            during = await _stats(session, url)
            fast.faults()
            second = await _gpu(session, url)
        stats = await settled(url)
    assert first == "H100-80GB"
    assert second[0] == "A100-40GB"
    row = during["spillover"]["models"]["llama-3.1-8b"]
    assert row["serving"] == 1
    assert [(t["generations"], t["utilisationPercent"], t["saturated"]) for t in row["tiers"]] == [
        (["H100-80GB"], 50.0, True),
        (["A100-40GB"], 0.0, False),
    ]
    assert stats["spillover"]["requests"] == {"0": 1, "1": 1}
    assert stats["spillover"]["fallbacks"] == 0


async def test_all_tiers_saturated_takes_the_fallback_model(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    small = start_sim("L4", extra=("--model", SMALL))
    try:
        for sim in sims:
            sim.faults(slowdown=1000)
        backends = [fast.backend(), slow.backend(), {**small.backend(), "model": SMALL}]
        config = _config(backends, failureHandling={"fallbackModel": SMALL})
        async with serve_router(config) as (url, _), aiohttp.ClientSession() as session:
            async with _held(session, url) as first, _held(session, url) as second:
                during = await _stats(session, url)
                fallback = await _gpu(session, url)
            stats = await settled(url)
            metric = await _tier_metric(session, url)
    finally:
        small.stop()
    assert (first, second) == ("H100-80GB", "A100-40GB")
    assert fallback == ("L4", small.url)
    assert during["spillover"]["models"]["llama-3.1-8b"]["serving"] is None
    assert stats["spillover"]["fallbacks"] == 1
    # The fallback's L4 is in no tier: it is the tier after the last.
    assert stats["spillover"]["requests"] == {"0": 1, "1": 1, "2": 1}
    assert stats["spillover"]["models"][SMALL]["tiers"][2]["generations"] == ["L4"]
    model = "llama-3.1-8b"
    assert metric == {(model, "0", "false"): 1, (model, "1", "false"): 1, (model, "2", "true"): 1}


async def test_without_a_fallback_any_endpoint_with_room_serves(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    for sim in sims:
        sim.faults(slowdown=1000)
    config = _config([fast.backend(), slow.backend()])
    async with serve_router(config) as (url, _), aiohttp.ClientSession() as session:
        async with _held(session, url), _held(session, url):
            for sim in sims:
                sim.faults()
            third = await asyncio.wait_for(_gpu(session, url), timeout=10)
        stats = await settled(url)
        metric = await _tier_metric(session, url)
    assert third[0] in {"H100-80GB", "A100-40GB"}  # each at 1 of 2 slots: not queued
    assert stats["spillover"]["requests"] == {"0": 1, "1": 1, "overflow": 1}
    model = "llama-3.1-8b"
    assert metric == {(model, t, "false"): 1 for t in ("0", "1", "overflow")}
    assert stats["spillover"]["fallbacks"] == 0
