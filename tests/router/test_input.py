"""Bad input: OpenAI-shaped errors, no backend call, the router keeps serving, and
neither the API key nor the prompt reaches the logs. The API surface: 404 naming an
unknown route, 405 with ``Allow``, 415, ``n`` counted, ``x-request-id`` and
``traceparent`` carried upstream, embeddings end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gpufleet.ports import free_port
from gpufleet.router import app, body, config, intake, pipeline
from gpufleet.router.errors import RateLimited
from gpufleet.router.outcome import Outcome
from tests.router.peers import MODEL, Sim, chat, router_config, serve_router, settled
from tests.router.routerproc import start_router

pytestmark = pytest.mark.slow
KEY = "sk-test-0123456789abcdef"
SECRET_PROMPT = "the-secret-prompt-text"


def _config(sim: Sim) -> dict[str, object]:
    raw = router_config(
        [sim.backend()],
        admission={
            "requireApiKey": True,
            "tenants": [{"name": "acme", "apiKeySecretRef": {"name": "acme"}}],
        },
    )
    raw["apiKeys"] = {"acme": {"value": KEY}}
    raw["limits"] = {"maxBodyBytes": 16384, "maxTokensLimit": 100_000}
    return raw


CASES = [
    ("malformed-json", b"{not json", {}, 400, None),
    ("not-an-object", b"[1, 2]", {}, 400, None),
    ("missing-messages", b'{"model": "llama-3.1-8b"}', {}, 400, "messages"),
    ("missing-model", b'{"messages": [{"role": "user", "content": "x"}]}', {}, 400, "model"),
    ("unknown-model", b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}',
     {}, 404, "model"),
    ("negative-max-tokens", b'{"model": "llama-3.1-8b", "messages": [{"role": "user", '
     b'"content": "x"}], "max_tokens": -5}', {}, 400, "max_tokens"),
    ("absurd-max-tokens", b'{"model": "llama-3.1-8b", "messages": [{"role": "user", '
     b'"content": "x"}], "max_tokens": 999999999}', {}, 400, "max_tokens"),
    ("string-max-tokens", b'{"model": "llama-3.1-8b", "messages": [{"role": "user", '
     b'"content": "x"}], "max_tokens": "9"}', {}, 400, "max_tokens"),
    ("oversized", b'{"model": "llama-3.1-8b", "prompt": "' + b"x" * 20000 + b'"}', {}, 413, None),
    ("nested-5000-deep", b"[" * 5000, {}, 400, None),
    ("nested-in-object", b'{"model": "llama-3.1-8b", "messages": ' + b"[" * 3000, {}, 400, None),
    ("text-plain", None, {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("form", None, {"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    ("n-zero", None, {"n": 0}, 400, "n"),
    ("n-too-many", None, {"n": 129}, 400, "n"),
    ("n-string", None, {"n": "2"}, 400, "n"),
    ("n-float", None, {"n": 1.5}, 400, "n"),
    ("n-bool", None, {"n": True}, 400, "n"),
    ("no-key", None, {"Authorization": None}, 401, None),
    ("wrong-key", None, {"Authorization": "Bearer sk-wrong-key-000000"}, 401, None),
    ("bad-scheme", None, {"Authorization": f"Basic {KEY}"}, 401, None),
    ("unknown-class", None, {"x-gpufleet-class": "platinum"}, 400, "x-gpufleet-class"),
]  # fmt: skip


async def test_bad_input_is_rejected_without_backend_call(
    sims: tuple[Sim, Sim], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fast, _ = sims
    good = chat(SECRET_PROMPT)
    async with serve_router(_config(fast)) as (url, _), aiohttp.ClientSession() as session:
        for name, payload, headers, status, param in CASES:
            sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            document = dict(good)
            for key, value in headers.items():
                if key == "n":
                    document["n"] = value
                elif value is None:
                    sent.pop(key)
                else:
                    sent[key] = str(value)
            data = payload if payload is not None else json.dumps(document).encode()
            async with session.post(url + "/v1/chat/completions", data=data, headers=sent) as r:
                body = await r.json()
                assert r.status == status, name
                assert set(body["error"]) == {"message", "type", "param", "code"}, name
                assert body["error"]["param"] == param, name
        stats = await settled(url)
        assert stats["endpoints"][0]["requests"] == 0
        assert "internal_error" not in stats["outcomes"]
        headers = {"Authorization": f"Bearer {KEY}"}
        async with session.post(url + "/v1/chat/completions", json=good, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["usage"]["completion_tokens"] == 8
        async with session.get(url + "/v1/models", headers=headers) as r:
            assert [m["id"] for m in (await r.json())["data"]] == [MODEL]
    assert KEY not in caplog.text
    assert SECRET_PROMPT not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _openai_error(document: dict[str, object]) -> dict[str, object]:
    error = document["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    return error


async def test_unknown_path_and_method(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    async with (
        serve_router(router_config([fast.backend()])) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        async with session.post(url + "/v1/nothing", json={"model": MODEL}) as r:
            assert r.status == 404
            error = _openai_error(await r.json())
            assert error["code"] == "unknown_route"
            assert "POST /v1/nothing" in str(error["message"])
        async with session.get(url + "/v1/chat/completions") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "POST"
            assert _openai_error(await r.json())["code"] == "method_not_allowed"
        async with session.delete(url + "/v1/models") as r:
            assert r.status == 405
            assert "GET" in r.headers["Allow"]
        async with session.get(url + "/healthz") as r:
            assert r.status == 200


async def _chunks(size: int, count: int) -> AsyncIterator[bytes]:
    yield b'{"model": "llama-3.1-8b", "prompt": "'
    for _ in range(count):
        yield b"x" * size


async def test_oversized_chunked_body_is_413_without_an_internal_error(
    sims: tuple[Sim, Sim], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fast, _ = sims
    raw = router_config([fast.backend()])
    raw["limits"] = {"maxBodyBytes": 4096}
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        # A generator body goes out chunked: no Content-Length to refuse it early.
        headers = {"Content-Type": "application/json"}
        data = _chunks(1024, 64)
        async with session.post(url + "/v1/completions", data=data, headers=headers) as r:
            assert r.status == 413
            assert _openai_error(await r.json())["code"] == "payload_too_large"
        stats = await settled(url)
    assert stats["outcomes"] == {"rejected_413": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_n_multiplies_the_estimate_the_quota_and_the_cost() -> None:
    raw = router_config(
        [{"url": "http://127.0.0.1:1", "model": MODEL, "gpu": "H100-80GB"}],
        admission={"tenants": [{"name": "acme", "apiKeySecretRef": {"name": "acme"},
                                "tokensPerMinute": 3000}]},
    )  # fmt: skip
    raw["apiKeys"] = {"acme": {"value": KEY}}
    router = app.build(config.parse(raw))

    def job(n: int) -> intake.Job:
        raw_body = json.dumps(chat("x" * 400, max_tokens=200, n=n)).encode()
        parsed = body.parse("chat", raw_body, max_tokens_limit=100_000)
        return intake.prepare(router, parsed, tenant="acme", headers={})

    one, sixteen = job(1), job(16)
    assert sixteen.estimate.input_tokens == one.estimate.input_tokens
    assert sixteen.estimate.output_tokens == 16 * one.estimate.output_tokens
    prompt_cost = one.estimate.input_tokens * 0.1
    assert math.isclose(sixteen.estimate.cost - prompt_cost, 16 * (one.estimate.cost - prompt_cost))
    async with pipeline.admitted(router, one, Outcome()):  # 300 of the 3,000 tokens a minute
        with pytest.raises(RateLimited):  # n=16 asks 3,300
            async with pipeline.admitted(router, sixteen, Outcome()):
                pass
        assert router.quotas.in_flight("acme") == 1
    assert router.quotas.in_flight("acme") == 0  # given back when the scope ends
    with pytest.raises(ConnectionResetError):  # however it ends
        async with pipeline.admitted(router, one, Outcome()):
            raise ConnectionResetError
    assert router.quotas.in_flight("acme") == 0


SEEN = web.AppKey("seen", list)


async def _recording(request: web.Request) -> web.Response:
    request.app[SEEN].append(request.headers.copy())
    return web.json_response({"object": "chat.completion", "model": MODEL, "choices": []},
                             headers={"x-request-id": "upstream-made-this-up"})  # fmt: skip


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


async def test_request_id_and_traceparent_are_carried_upstream() -> None:
    upstream = web.Application()
    upstream[SEEN] = []
    upstream.router.add_post("/v1/chat/completions", _recording)
    upstream.router.add_get("/health", _ok)
    runner = web.AppRunner(upstream, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend = {"url": f"http://127.0.0.1:{port}", "model": MODEL, "gpu": "H100-80GB"}
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent = [
        {"x-request-id": "client-42", "traceparent": parent, "tracestate": "vendor=1"},
        {},
        {"x-request-id": "bad id\twith spaces", "traceparent": "00-" + "0" * 32 + "-x-01"},
    ]
    answered = []
    try:
        async with serve_router(router_config([backend])) as (url, _), aiohttp.ClientSession() as s:
            for headers in sent:
                async with s.post(url + "/v1/chat/completions", json=chat(), headers=headers) as r:
                    assert r.status == 200
                    answered.append(r.headers["x-request-id"])
            async with s.get(url + "/v1/nothing", headers={"x-request-id": "lost-1"}) as r:
                assert r.headers["x-request-id"] == "lost-1"
    finally:
        await runner.cleanup()
    seen = upstream[SEEN]
    assert answered[0] == "client-42" and seen[0]["x-request-id"] == "client-42"
    assert seen[0]["traceparent"] == parent and seen[0]["tracestate"] == "vendor=1"
    for i in (1, 2):  # made by the router: a fresh id, a new sampled trace
        assert re.fullmatch(r"[0-9a-f]{32}", answered[i]), answered[i]
        assert seen[i]["x-request-id"] == answered[i]
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", seen[i]["traceparent"])
        assert "tracestate" not in seen[i]
    assert answered[1] != answered[2]


async def test_embeddings_end_to_end(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    request = {"model": MODEL, "input": ["a first text", "a second, longer text", "a first text"]}
    async with (
        serve_router(router_config([fast.backend()])) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        async with session.post(url + "/v1/embeddings", json=request) as r:
            assert r.status == 200, await r.text()
            document = await r.json()
        dims = {**request, "input": "a first text", "dimensions": 256}
        async with session.post(url + "/v1/embeddings", json=dims) as r:
            short = (await r.json())["data"][0]["embedding"]
        async with session.post(url + "/v1/embeddings", json={"model": MODEL, "input": []}) as r:
            assert r.status == 400
        stats = await settled(url)
    data = document["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert data[0]["object"] == "embedding" and len(data[0]["embedding"]) == 4096
    assert data[0]["embedding"] == data[2]["embedding"] != data[1]["embedding"]
    assert math.isclose(sum(x * x for x in data[1]["embedding"]), 1.0, rel_tol=1e-6)
    assert len(short) == 256
    assert document["usage"]["prompt_tokens"] > 0
    assert document["usage"]["completion_tokens"] == 0
    assert stats["outcomes"]["success"] == 2


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as raw bytes (what no HTTP client would send); the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_no_key_or_prompt_reaches_the_log_at_any_level(
    sims: tuple[Sim, Sim], tmp_path: Path
) -> None:
    fast, _ = sims
    router = start_router(_config(fast), tmp_path)
    wrong_key = "sk-wrong-but-secret-999999"
    prompt = json.dumps(chat(SECRET_PROMPT)).encode()
    try:
        async with aiohttp.ClientSession() as session:
            url = router.url + "/v1/chat/completions"
            for headers, data in [
                ({"Authorization": f"Bearer {KEY}" + "x" * 9000}, prompt),  # over aiohttp's limit
                ({"Authorization": f"Bearer {wrong_key}"}, prompt),
                ({"Authorization": f"Bearer {KEY}"}, SECRET_PROMPT.encode()),  # not JSON
                ({"Authorization": f"Bearer {KEY}"}, b'{"model": "' + SECRET_PROMPT.encode()),
                ({"Authorization": f"Bearer {KEY}"}, b"[" * 5000 + SECRET_PROMPT.encode()),
                ({"Authorization": f"Bearer {KEY}"}, prompt + b" " * 20000),  # too large
                ({"Authorization": f"Bearer {KEY}", "x-gpufleet-class": SECRET_PROMPT}, prompt),
                ({"Authorization": f"Bearer {KEY}"}, prompt),  # served
            ]:
                sent = {"Content-Type": "application/json", **headers}
                async with session.post(url, data=data, headers=sent) as response:
                    assert response.status in (200, 400, 401, 413), response.status
        key = KEY.encode()
        for raw in (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key
            + b"\x01\r\nContent-Length: 2\r\n\r\n{}",  # a control character in the header
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + SECRET_PROMPT.encode() + b"\r\n\r\n",  # the prompt where a chunk size belongs
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Note: " + SECRET_PROMPT.encode()
            + b"y" * 9000 + b"\r\n\r\n",
        ):  # fmt: skip
            assert (await _raw(router.port, raw))[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400")
        await asyncio.sleep(0.3)
    finally:
        router.terminate()
        await asyncio.to_thread(router.proc.wait, 10)
        router.stop()
    log = router.log()
    assert "Error handling request" in log  # aiohttp did log the malformed requests
    for secret in (KEY, wrong_key, SECRET_PROMPT, "sk-wrong"):
        assert secret not in log, secret
