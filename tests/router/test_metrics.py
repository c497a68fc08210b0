"""The router's /metrics against real simulators: request counters with class, status
code and outcome apart, the end-to-end histogram, tokens per tenant and generation as
the engine reported them (or counted from a stream's events), the endpoints' GPUs and
price, process metrics, and no ``_created`` series."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.api.runtime import FailureHandling
from gpufleet.router import metrics
from gpufleet.routing.admission import ANONYMOUS
from tests.router.peers import MODEL, Sim, chat, router_config, serve_router, stream_events

Sample = tuple[str, dict[str, str], float]
PRICE = 2.5  # dollars per GPU-hour of the first simulator


def _samples(text: str) -> list[Sample]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def _scrape(session: aiohttp.ClientSession, url: str) -> list[Sample]:
    async with session.get(url + "/metrics") as response:
        return _samples(await response.text())


def _config(sims: tuple[Sim, Sim]) -> dict[str, Any]:
    backends = [sims[0].backend() | {"costPerGpuHour": PRICE}, sims[1].backend()]
    return router_config(backends, strategy="cost")


async def _tokens(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    samples = await _scrape(session, url)
    return (
        _total(samples, "gpufleet_router_prompt_tokens_total", tenant=ANONYMOUS, model=MODEL),
        _total(samples, "gpufleet_router_completion_tokens_total", tenant=ANONYMOUS, model=MODEL),
    )


async def test_tokens_follow_the_engines_usage_and_a_streams_events(
    sims: tuple[Sim, Sim],
) -> None:
    async with serve_router(_config(sims)) as (url, _), aiohttp.ClientSession() as session:
        before = await _tokens(session, url)
        async with session.post(url + "/v1/chat/completions", json=chat(max_tokens=7)) as r:
            usage = (await r.json())["usage"]
        after_answer = await _tokens(session, url)
        streamed = chat(max_tokens=5, stream=True, stream_options={"include_usage": True})
        async with session.post(url + "/v1/chat/completions", json=streamed) as r:
            events = await stream_events(r)
        stream_usage = json.loads(events[-2])["usage"]
        after_stream = await _tokens(session, url)
        bare_request = chat(max_tokens=6, stream=True)
        async with session.post(url + "/v1/chat/completions", json=bare_request) as r:
            bare = await stream_events(r)
        after_bare = await _tokens(session, url)
    assert after_answer[0] - before[0] == usage["prompt_tokens"] > 0
    assert after_answer[1] - before[1] == usage["completion_tokens"] == 7
    assert after_stream[0] - after_answer[0] == stream_usage["prompt_tokens"] > 0
    assert after_stream[1] - after_answer[1] == stream_usage["completion_tokens"] == 5
    # No usage in the stream: one token per event but the role event and [DONE], and the
    # router's estimate of the prompt.
    assert b'"role"' in bare[0] and bare[-1] == b"[DONE]"
    assert after_bare[1] - after_stream[1] == len(bare) - 2 == 6
    assert after_bare[0] - after_stream[0] > 0


async def test_requests_have_class_and_status_code_apart_from_outcome(
    sims: tuple[Sim, Sim],
) -> None:
    headers = {"x-gpufleet-class": "batch"}
    async with serve_router(_config(sims)) as (url, _), aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=chat(), headers=headers) as r:
            assert r.status == 200
            gpu = r.headers["x-gpufleet-gpu"]
        unknown = chat() | {"model": "no-such-model"}
        async with session.post(url + "/v1/chat/completions", json=unknown) as r:
            assert r.status == 404
        samples = await _scrape(session, url)
    name = "gpufleet_router_requests_total"
    served = {"model": MODEL, "gpu": gpu, "outcome": "success", "code": "200"}
    assert _total(samples, name, **served, **{"class": "batch"}) == 1
    assert _total(samples, name, outcome="rejected_404", code="404") == 1
    duration = "gpufleet_router_request_duration_seconds"
    assert _total(samples, duration + "_count", gpu=gpu, code="200", **{"class": "batch"}) == 1
    assert _total(samples, duration + "_count", code="404") == 1
    top = _total(samples, duration + "_bucket", code="404", le="86400.0")
    assert top == 1


async def test_exposition_has_prices_process_metrics_and_no_created_series(
    sims: tuple[Sim, Sim],
) -> None:
    async with serve_router(_config(sims)) as (url, _), aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=chat()) as r:
            assert r.status == 200
        samples = await _scrape(session, url)
    names = {name for name, _, _ in samples}
    assert not [n for n in names if n.endswith("_created")]
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    price = [(labels, v) for n, labels, v in samples
             if n == "gpufleet_router_endpoint_cost_per_gpu_hour"]  # fmt: skip
    assert price == [({"endpoint": sims[0].url, "gpu": sims[0].gpu, "pool": "static",
                       "model": MODEL}, PRICE)]  # fmt: skip
    assert _total(samples, "gpufleet_router_endpoint_gpus") == 2  # two TP-1 replicas


def test_latency_buckets_reach_past_the_longest_request_timeout() -> None:
    field = FailureHandling.model_fields["request_timeout_seconds"]
    longest = next(m.le for m in field.metadata if getattr(m, "le", None) is not None)
    assert metrics.LATENCY_BUCKETS[-1] >= longest
    assert list(metrics.LATENCY_BUCKETS) == sorted(metrics.LATENCY_BUCKETS)
