"""One protocol suite, two servers: real vLLM and ``gpufleet sim`` answer alike.

Every test runs against both (``server`` is parametrised): the models list, chat and
completions streamed and not, with and without usage, an unknown model, ``max_tokens``
beyond the context, a client that aborts mid-stream, the ``priority`` field under
``--scheduling-policy priority``, and the vLLM metric families and labels that the
router, the autoscaler, the dashboards and the alert rules read. Real vLLM runs the
command line the operator renders for the tiny Llama's ModelPool (conftest); the
simulator is told the same name and context. Differences that remain on purpose are
listed in docs/simulator.md.

Only shapes and rules are compared, never text: the tiny model's weights are random.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.vllm import servers

# Real vLLM's start (minutes on a busy machine) counts against the first test using it.
pytestmark = pytest.mark.timeout(600)
MODEL = servers.MODEL
# The families gpufleet reads (api/runtime.py's default metric names, the chart's
# dashboards and alert rules) and the labels it selects or groups by.
READ_FAMILIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:request_success": "counter",
}
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


@pytest.fixture(scope="module")
def sim_server() -> Iterator[servers.Server]:
    server = servers.start_sim()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sim", pytest.param("vllm", marks=pytest.mark.vllm)])
def server(request: pytest.FixtureRequest) -> servers.Server:
    name = "sim_server" if request.param == "sim" else "vllm_server"
    found: servers.Server = request.getfixturevalue(name)
    return found


async def post(server: servers.Server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(server.url + path, json=body) as r:
        return r.status, await r.json(content_type=None)


async def stream(server: servers.Server, path: str, body: dict[str, Any]) -> list[Any]:
    """The decoded ``data:`` events of a streamed answer; ``[DONE]`` as the string."""
    events: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, json={**body, "stream": True}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            line = raw.strip()
            if line.startswith(b"data: "):
                data = line[6:]
                events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


def chat(max_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello there"}]
    return {"model": MODEL, "messages": messages, "max_tokens": max_tokens, **extra}


def completion(max_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "hello there", "max_tokens": max_tokens, **extra}


def assert_usage(usage: dict[str, Any], *, at_most: int) -> None:
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= at_most
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def metrics(server: servers.Server) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/metrics") as response,
    ):
        text = await response.text()
    return {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("vllm:")}


def samples(family: Any, name: str | None = None) -> list[Any]:
    return [s for s in family.samples if name is None or s.name == name]


async def test_models_list(server: servers.Server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/v1/models") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert (model["id"], model["object"], model["max_model_len"]) == (MODEL, "model", 512)


async def test_chat(server: servers.Server) -> None:
    status, body = await post(server, "/v1/chat/completions", chat())
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], at_most=5)


async def test_completion(server: servers.Server) -> None:
    status, body = await post(server, "/v1/completions", completion())
    assert status == 200
    assert body["object"] == "text_completion" and body["model"] == MODEL
    (choice,) = body["choices"]
    assert isinstance(choice["text"], str) and choice["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], at_most=5)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_stream_without_usage(server: servers.Server, path: str) -> None:
    body = chat() if "chat" in path else completion()
    events = await stream(server, path, body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(not c.get("usage") for c in chunks), "usage only when asked for"
    assert all(len(c["choices"]) == 1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    if "chat" in path:
        assert chunks[0]["object"] == "chat.completion.chunk"
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_stream_with_usage(server: servers.Server, path: str) -> None:
    body = (chat if "chat" in path else completion)(stream_options={"include_usage": True})
    events = await stream(server, path, body)
    assert events[-1] == "[DONE]"
    *tokens, last = events[:-1]
    assert last["choices"] == []  # the usage chunk comes alone, after the finish
    assert_usage(last["usage"], at_most=5)
    assert all(not c.get("usage") for c in tokens)
    assert tokens[-1]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_unknown_model(server: servers.Server, path: str) -> None:
    body = {**(chat() if "chat" in path else completion()), "model": "no-such-model"}
    status, answer = await post(server, path, body)
    assert status == 404
    assert answer["error"]["type"] == "NotFoundError"
    assert answer["error"]["code"] == 404
    assert "no-such-model" in answer["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_max_tokens_beyond_the_context(server: servers.Server, path: str) -> None:
    body = chat(max_tokens=600) if "chat" in path else completion(max_tokens=600)
    status, answer = await post(server, path, body)
    assert status == 400
    assert answer["error"]["type"] == "BadRequestError"
    assert answer["error"]["code"] == 400
    assert "max_tokens" in answer["error"]["message"]


async def test_priority_under_the_priority_policy(server: servers.Server) -> None:
    status, body = await post(server, "/v1/chat/completions", chat(priority=-5))
    assert status == 200, body
    assert_usage(body["usage"], at_most=5)


async def _running(server: servers.Server) -> float:
    family = (await metrics(server))["vllm:num_requests_running"]
    return sum(s.value for s in samples(family))


async def test_abort_mid_stream_releases_the_request(server: servers.Server) -> None:
    before = await metrics(server)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            server.url + "/v1/chat/completions", json=chat(max_tokens=400, stream=True)
        )
        await response.content.readline()  # the first event: the request is running
        response.close()  # the client goes away mid-stream
    for _ in range(150):  # up to 30 s: the engine notices the disconnect at its next step
        if await _running(server) == 0:
            break
        await asyncio.sleep(0.2)
    assert await _running(server) == 0
    # A request its client abandoned is no finished request, of any reason (vLLM 0.30
    # counts finished_reason="abort" only for aborts of its own).
    assert _finished(await metrics(server)) == _finished(before)


def _finished(families: dict[str, Any]) -> dict[str, float]:
    found = samples(families["vllm:request_success"], "vllm:request_success_total")
    return {s.labels["finished_reason"]: s.value for s in found}


async def test_metric_families_and_labels_gpufleet_reads(server: servers.Server) -> None:
    await post(server, "/v1/chat/completions", chat())
    families = await metrics(server)
    kinds = {name: families[name].type for name in READ_FAMILIES if name in families}
    assert kinds == READ_FAMILIES
    for name in READ_FAMILIES:
        for sample in families[name].samples:
            assert sample.labels.get("model_name") == MODEL, sample
            assert sample.labels.get("engine") == "0", sample


async def test_request_success_has_every_finish_reason_from_the_start(
    server: servers.Server,
) -> None:
    family = (await metrics(server))["vllm:request_success"]
    reasons = {s.labels["finished_reason"] for s in samples(family, "vllm:request_success_total")}
    assert reasons == set(FINISH_REASONS)
