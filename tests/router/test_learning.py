"""``generationWeights.mode: auto``: the router learns each endpoint's throughput from
the streams it proxies, and the learned weights replace wrong starting figures."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.router.peers import Sim, chat, router_config, serve_router, stream_events

pytestmark = pytest.mark.slow


def _weights(stats: dict[str, Any]) -> dict[str, float]:
    return {e["gpu"]: e["throughput_weight"] for e in stats["endpoints"]}


@pytest.mark.timeout(90)
async def test_auto_mode_learns_which_generation_is_faster(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims  # H100-80GB, A100-40GB
    # Start from inverted weights: the A100 claimed 20x faster than the H100.
    policy = {
        "strategy": "round-robin",
        "generationWeights": {
            "mode": "auto",
            "overrides": {fast.gpu: 0.2, slow.gpu: 4.0},
            "minSamples": 3,
            "learningHalfLifeSeconds": 60,
        },
    }
    raw = router_config([fast.backend(), slow.backend()], **policy)
    async with serve_router(raw) as (base, _app), aiohttp.ClientSession() as session:
        async with session.get(base + "/stats") as response:
            before = _weights(await response.json())
        assert before[slow.gpu] > before[fast.gpu]
        for _ in range(10):
            body = chat(max_tokens=64, stream=True, ignore_eos=True)
            async with session.post(base + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                assert (await stream_events(response))[-1] == b"[DONE]"
        for _ in range(60):  # the learning loop re-weights every 5 s
            async with session.get(base + "/stats") as response:
                after = _weights(await response.json())
            if after[fast.gpu] > after[slow.gpu]:
                break
            await asyncio.sleep(0.25)
    assert after[fast.gpu] > after[slow.gpu], f"weights not learned: {before} -> {after}"
    # Each weight is its prior x its speed relative to the pool's median: with priors this
    # wrong both move, and the one the prior overrated most falls furthest.
    assert after[slow.gpu] < before[slow.gpu] and after[fast.gpu] > before[fast.gpu]
