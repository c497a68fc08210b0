"""The router in front of real vLLM: routed, streamed, usage counted, aborts released.

The router runs in-process (tests.router.peers.serve_router, as ``gpufleet router``
serves it) with real vLLM (the session's ``vllm_server``) as its one endpoint, and the
checks are the router's own /metrics and real vLLM's; its signals come from a real
Prometheus scraping vLLM, so they are read with vLLM's own labels (``engine`` too).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.routing.admission import ANONYMOUS
from tests.router import peers
from tests.router.peers import router_config, serve_router, stream_events
from tests.vllm import servers

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]
MODEL = servers.MODEL


def config(server: servers.Server, **policy: Any) -> dict[str, Any]:
    backend = {"url": server.url, "model": MODEL, "gpu": "L4", "tensorParallelSize": 1}
    return router_config([backend], **policy)


def chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello"}]
    return {"model": MODEL, "messages": messages, "max_tokens": max_tokens, **extra}


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    """Each sample's value by (name, sorted labels), summed over the rest."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())))
            out[key] = s.value
    return out


def total(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    wanted = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for (n, ls), v in samples.items() if n == name and all(w in ls for w in wanted))


async def router_tokens(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    samples = await scrape(session, url)
    labels = {"tenant": ANONYMOUS, "model": MODEL}
    return (
        total(samples, "gpufleet_router_prompt_tokens_total", **labels),
        total(samples, "gpufleet_router_completion_tokens_total", **labels),
    )


async def test_routed_answers_and_streams_count_vllms_usage(vllm_server: servers.Server) -> None:
    async with serve_router(config(vllm_server)) as (url, _), aiohttp.ClientSession() as session:
        before = await router_tokens(session, url)
        async with session.post(url + "/v1/chat/completions", json=chat(7)) as response:
            assert response.status == 200
            usage = (await response.json())["usage"]
        after_answer = await router_tokens(session, url)
        streamed = chat(5, stream=True, stream_options={"include_usage": True})
        async with session.post(url + "/v1/chat/completions", json=streamed) as response:
            events = await stream_events(response)
        after_stream = await router_tokens(session, url)
    assert events[-1] == b"[DONE]"
    assert after_answer[0] - before[0] == usage["prompt_tokens"] > 0
    assert after_answer[1] - before[1] == usage["completion_tokens"]
    assert after_stream[1] - after_answer[1] == usage_of(events)["completion_tokens"]


def usage_of(events: list[bytes]) -> dict[str, int]:
    found: dict[str, int] = json.loads(events[-2])["usage"]
    return found


async def test_an_aborted_stream_is_released_by_router_and_engine(
    vllm_server: servers.Server,
) -> None:
    async with serve_router(config(vllm_server)) as (url, _), aiohttp.ClientSession() as session:
        response = await session.post(url + "/v1/chat/completions", json=chat(400, stream=True))
        await response.content.readline()  # streaming through the router
        response.close()
        for _ in range(150):  # up to 30 s
            router = total(await scrape(session, url), "gpufleet_router_in_flight")
            engine = total(await scrape(session, vllm_server.url), "vllm:num_requests_running")
            if router == engine == 0:
                break
            await asyncio.sleep(0.2)
    assert (router, engine) == (0, 0)


async def test_signals_from_prometheus_scraping_vllm(
    vllm_server: servers.Server, tmp_path: Path
) -> None:
    target = vllm_server.url.removeprefix("http://")
    with peers.prometheus([target], tmp_path) as (prom_url, _):
        prometheus = {"url": prom_url, "refreshIntervalSeconds": 0.5, "stalenessSeconds": 5}
        raw = config(vllm_server, prometheus=prometheus)
        async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
            async with session.post(url + "/v1/chat/completions", json=chat(3)) as response:
                assert response.status == 200

            def fresh(stats: dict[str, Any]) -> bool:
                (row,) = [e.get("signals") or {} for e in stats["endpoints"]]
                return row.get("kv_usage") is not None and row.get("waiting") is not None

            stats = await peers.stats_until(session, url, fresh, timeout_s=60)
    assert stats["signals"]["source"] == "prometheus"
    assert stats["signals"]["fresh_endpoints"] == 1
    (endpoint,) = stats["endpoints"]
    assert 0 <= endpoint["signals"]["kv_usage"] <= 1
    assert endpoint["signals"]["waiting"] == 0
