"""The simulator's HTTP apps in-process: streaming format, errors, metrics, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.sim import faults, replica, server
from gpufleet.sim.state import STATE, SimSettings

MODEL = "llama-3.1-8b"
_USER = b'{"role": "user", "content": "x"}'
Api = tuple[TestServer, aiohttp.ClientSession, TestServer]


def _settings(**kw: object) -> SimSettings:
    built = replica.build(replica.ReplicaSpec(MODEL, "H100-80GB", 1, max_model_len=4096))
    base: dict[str, object] = {"replica": built, "served_model_name": MODEL, "speed": 50.0,
                               "hostname": "node-a"}  # fmt: skip
    return SimSettings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    app = server.create_app(_settings())
    dcgm = TestServer(server.create_dcgm_app(app), host="127.0.0.1")
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    await dcgm.start_server()
    async with aiohttp.ClientSession() as session:
        yield srv, session, dcgm
    await dcgm.close()
    await srv.close()


def _chat(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                               "max_tokens": 5}  # fmt: skip
    return {**body, **kw}


async def _events(response: aiohttp.ClientResponse) -> list[str]:
    text = (await response.read()).decode()
    assert text.endswith("\n\n")
    return [block.removeprefix("data: ") for block in text.strip().split("\n\n")]


async def test_streamed_chat_matches_vllm(api: Api) -> None:
    srv, session, _ = api
    body = _chat(stream=True, stream_options={"include_usage": True})
    async with session.post(srv.make_url("/v1/chat/completions"), json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = chunks[1:-1]
    assert len(tokens) == 5
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 4 + ["length"]
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks
    )
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["prompt_tokens"] > 0


async def test_streamed_completion_without_usage(api: Api) -> None:
    srv, session, _ = api
    body = {"model": MODEL, "prompt": "once upon", "max_tokens": 3, "stream": True}
    async with session.post(srv.make_url("/v1/completions"), json=body) as response:
        events = await _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 3
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)


async def test_non_streamed_completion(api: Api) -> None:
    srv, session, _ = api
    body = {"model": MODEL, "prompt": "once upon", "max_tokens": 4}
    async with session.post(srv.make_url("/v1/completions"), json=body) as response:
        data = await response.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert len(data["choices"][0]["text"].split()) == 4
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{nope", 400, "BadRequestError"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "BadRequestError"),
        (b'{"model": "other", "messages": [' + _USER + b"]}", 404, "NotFoundError"),
        (b'{"model": "llama-3.1-8b", "max_tokens": 5000, "messages": [' + _USER + b"]}",
         400, "BadRequestError"),
    ],
)  # fmt: skip
async def test_bad_requests_get_vllm_errors(api: Api, body: bytes, status: int, kind: str) -> None:
    srv, session, _ = api
    async with session.post(srv.make_url("/v1/chat/completions"), data=body) as response:
        assert response.status == status
        assert (await response.json())["error"]["type"] == kind


async def test_models_and_health(api: Api) -> None:
    srv, session, _ = api
    async with session.get(srv.make_url("/v1/models")) as response:
        data = await response.json()
    assert data["data"][0]["id"] == MODEL and data["data"][0]["max_model_len"] == 4096
    async with session.get(srv.make_url("/health")) as response:
        assert response.status == 200


async def _metrics(
    session: aiohttp.ClientSession, url: str
) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with session.get(url) as response:
        text = await response.text()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


async def test_vllm_metric_names_and_values(api: Api) -> None:
    srv, session, _ = api
    for _ in range(2):
        async with session.post(srv.make_url("/v1/chat/completions"), json=_chat()) as response:
            assert response.status == 200
    found = await _metrics(session, str(srv.make_url("/metrics")))
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries_total",
                 "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_count"):  # fmt: skip
        assert name in found, name
        assert found[name][0][0]["model_name"] == MODEL
    assert found["vllm:generation_tokens_total"][0][1] == 10
    assert found["vllm:e2e_request_latency_seconds_count"][0][1] == 2
    assert found["vllm:prefix_cache_hits_total"][0][1] > 0  # the same chat twice
    assert "vllm:gpu_cache_usage_perc" not in found


async def test_legacy_metric_names_on_request() -> None:
    app = server.create_app(_settings(legacy_metric_names=True))
    async with TestServer(app, host="127.0.0.1") as srv, aiohttp.ClientSession() as session:
        found = await _metrics(session, str(srv.make_url("/metrics")))
    assert "vllm:gpu_cache_usage_perc" in found and "vllm:kv_cache_usage_perc" in found
    assert "vllm:time_per_output_token_seconds_count" in found


async def test_dcgm_metrics_on_second_app(api: Api) -> None:
    _, session, dcgm = api
    found = await _metrics(session, str(dcgm.make_url("/metrics")))
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
                 "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"):  # fmt: skip
        labels, _ = found[name][0]
        assert labels["gpu"] == "0" and labels["Hostname"] == "node-a"
        assert labels["modelName"] == "NVIDIA H100 80GB HBM3"
    used, free = found["DCGM_FI_DEV_FB_USED"][0][1], found["DCGM_FI_DEV_FB_FREE"][0][1]
    assert used + free == 81559


async def _set_faults(session: aiohttp.ClientSession, srv: TestServer, **changes: object) -> None:
    async with session.post(srv.make_url("/admin/faults"), json=changes) as response:
        assert response.status == 200, await response.text()


async def test_error_and_oom_faults(api: Api) -> None:
    srv, session, _ = api
    await _set_faults(session, srv, error_rate=1.0)
    async with session.post(srv.make_url("/v1/chat/completions"), json=_chat()) as response:
        assert response.status == 500
    await _set_faults(session, srv, error_rate=0.0, oom_rate=1.0)
    async with session.post(srv.make_url("/v1/chat/completions"), json=_chat()) as response:
        assert response.status == 500
        assert "CUDA out of memory" in (await response.json())["error"]["message"]
    async with session.delete(srv.make_url("/admin/faults")) as response:
        assert (await response.json()) == faults.FaultConfig().model_dump()
    async with session.post(srv.make_url("/v1/chat/completions"), json=_chat()) as response:
        assert response.status == 200


async def test_bad_fault_config_is_rejected(api: Api) -> None:
    srv, session, _ = api
    async with session.post(srv.make_url("/admin/faults"), json={"error_rate": 3}) as response:
        assert response.status == 400


async def test_hang_before_headers(api: Api) -> None:
    srv, session, _ = api
    await _set_faults(session, srv, hang_s=30)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(srv.make_url("/v1/chat/completions"), json=_chat(),
                                timeout=aiohttp.ClientTimeout(total=0.5)):  # fmt: skip
            pass


async def test_die_after_chunks_cuts_the_stream(api: Api) -> None:
    srv, session, _ = api
    await _set_faults(session, srv, die_after_chunks=2)
    body = _chat(stream=True, max_tokens=20)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(srv.make_url("/v1/chat/completions"), json=body) as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += chunk
    assert received.count(b"data: ") == 2
    assert b"[DONE]" not in received


async def test_unhealthy_fault(api: Api) -> None:
    srv, session, _ = api
    await _set_faults(session, srv, unhealthy=True)
    async with session.get(srv.make_url("/health")) as response:
        assert response.status == 503


async def test_slowdown_stretches_steps() -> None:
    # Virtual clock: the runner's sleep is real, but the step durations it reports via
    # its busy time are scaled; compare the runner's accounted busy time, not wall time.
    async def busy(slowdown: float) -> float:
        app = server.create_app(
            _settings(faults=faults.FaultConfig(slowdown=slowdown), speed=1000.0)
        )
        async with TestServer(app, host="127.0.0.1") as srv, aiohttp.ClientSession() as session:
            async with session.post(srv.make_url("/v1/chat/completions"), json=_chat()) as response:
                assert response.status == 200
            return app[STATE].runner._busy_s

    plain, slowed = await busy(1.0), await busy(8.0)
    assert slowed == pytest.approx(8 * plain, rel=1e-6)
