"""Bad input: OpenAI-shaped errors, no backend call, the router keeps serving, and
neither the API key nor the prompt reaches the logs."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.router.peers import MODEL, Sim, chat, router_config, serve_router, settled

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
    raw["limits"] = {"maxBodyBytes": 4096, "maxTokensLimit": 100_000}
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
    ("oversized", b'{"model": "llama-3.1-8b", "prompt": "' + b"x" * 8000 + b'"}', {}, 413, None),
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
            for key, value in headers.items():
                if value is None:
                    sent.pop(key)
                else:
                    sent[key] = value
            data = payload if payload is not None else __import__("json").dumps(good).encode()
            async with session.post(url + "/v1/chat/completions", data=data, headers=sent) as r:
                body = await r.json()
                assert r.status == status, name
                assert set(body["error"]) == {"message", "type", "param", "code"}, name
                assert body["error"]["param"] == param, name
        stats = await settled(url)
        assert stats["endpoints"][0]["requests"] == 0
        headers = {"Authorization": f"Bearer {KEY}"}
        async with session.post(url + "/v1/chat/completions", json=good, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["usage"]["completion_tokens"] == 8
        async with session.get(url + "/v1/models", headers=headers) as r:
            assert [m["id"] for m in (await r.json())["data"]] == [MODEL]
    assert KEY not in caplog.text
    assert SECRET_PROMPT not in caplog.text


async def test_unknown_path_and_method(sims: tuple[Sim, Sim]) -> None:
    fast, _ = sims
    async with (
        serve_router(router_config([fast.backend()])) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        async with session.get(url + "/v1/nothing") as r:
            assert r.status == 404
            assert (await r.json())["error"]["type"] == "not_found_error"
        async with session.get(url + "/v1/chat/completions") as r:
            assert r.status == 400
        async with session.get(url + "/healthz") as r:
            assert r.status == 200
