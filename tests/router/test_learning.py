"""``generationWeights.mode: auto``: the router learns each endpoint's throughput from
the streams it proxies, and the learned weights replace wrong starting figures."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gpufleet.router import appkeys
from gpufleet.routing import calibration
from tests.router.peers import Sim, chat, router_config, serve_router, start_sim, stream_events

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


@pytest.mark.timeout(60)
async def test_a_prompt_is_prefill_ahead_until_its_first_token_not_its_role_event() -> None:
    # The simulator sends a chat stream's role event at once and its first token after
    # the prompt's prefill: about 0.7 s for 8,000 tokens on an A100-40GB at speed 1.
    sim = start_sim("A100-40GB", speed=1.0)
    try:
        async with serve_router(router_config([sim.backend()], strategy="cost")) as (
            base, application,
        ), aiohttp.ClientSession() as session:  # fmt: skip
            router = application[appkeys.ROUTER]
            body = chat(" ".join(["abcd"] * 8000), max_tokens=4, stream=True)
            async with session.post(base + "/v1/chat/completions", json=body) as response:
                role = await response.content.readline()
                assert b'"role"' in role
                ahead = router.registry.candidates()[0].load.prefill_tokens
                assert (await stream_events(response))[-1] == b"[DONE]"
            after = router.registry.candidates()[0].load.prefill_tokens
            ttft_samples, tpot_samples = router.predictor.samples(sim.url)
    finally:
        sim.stop()
    assert ahead > 7000 and after == 0
    assert (ttft_samples, tpot_samples) == (1, 1)


@pytest.mark.timeout(60)
async def test_the_router_learns_how_far_streams_run_past_their_predictions() -> None:
    sim = start_sim("A100-40GB", speed=4.0)
    try:
        async with serve_router(router_config([sim.backend()], strategy="cost")) as (
            base, application,
        ), aiohttp.ClientSession() as session:  # fmt: skip
            router = application[appkeys.ROUTER]
            for _ in range(calibration.MIN_SAMPLES):
                body = chat("hello " * 200, max_tokens=16, stream=True)
                async with session.post(base + "/v1/chat/completions", json=body) as response:
                    assert (await stream_events(response))[-1] == b"[DONE]"
            now = router.clock()
            ttft = router.spread.factor(sim.url, "ttft", now)
            tpot = router.spread.factor(sim.url, "tpot", now)
            async with session.get(base + "/stats") as response:
                (row,) = (await response.json())["endpoints"]
    finally:
        sim.stop()
    # Each stream's first token and time per token were compared with the prediction it
    # was routed on (the learned curve catches up with the faster engine within a few).
    assert ttft is not None and tpot is not None
    for factor in (ttft, tpot):
        assert calibration.MIN_FACTOR <= factor <= calibration.MAX_FACTOR
    assert row["slo_margin"] == {"ttft": round(ttft, 3), "tpot": round(tpot, 3)}
