"""Property: no input gives a 5xx. Whatever the body, headers, method or path, the
router answers 2xx/4xx in OpenAI's error shape — bad input is the client's fault.

Two layers: the request parser and the path up to admission (``body.parse``,
``intake.prepare``, ``pipeline.admitted``) on generated JSON and bytes, and whole HTTP
requests through a real router whose one upstream always answers well (so any 5xx
is the router's). Example counts are bounded to keep the module under ~20 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.ports import free_port
from gpufleet.router import app, body, config, intake, pipeline, service
from gpufleet.router.errors import RouterError
from gpufleet.router.outcome import Outcome
from tests.router.peers import MODEL, router_config

KEY = "sk-fuzz-0123456789"
KINDS: tuple[body.Kind, ...] = ("chat", "completion", "embedding")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=20),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant"]) | st.text(max_size=5)},
        optional={"content": json_values | st.text(max_size=40)},
    )
    | json_values,
    max_size=3,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from([MODEL, "alias", ""]) | json_values,
        "messages": messages,
        "prompt": json_values | st.lists(st.integers(0, 2**40), max_size=5),
        "input": json_values,
        "max_tokens": json_values | st.integers(-5, 200_000),
        "max_completion_tokens": json_values,
        "n": json_values | st.integers(-2, 200),
        "stream": json_values,
    },
)
bodies = (
    requests.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
    | st.integers(1, 6000).map(lambda depth: b"[" * depth + b"]" * (depth % 3))
)


def _raw_config(url: str) -> dict[str, Any]:
    raw = router_config(
        [{"url": url, "model": MODEL, "gpu": "H100-80GB"}],
        modelAliases=[{"name": "alias", "model": MODEL}],
        admission={"tenants": [{"name": "acme", "apiKeySecretRef": {"name": "acme"},
                                "tokensPerMinute": 10_000_000}]},
        requestClasses=[{"name": "interactive", "priority": 10, "maxInputTokens": 50_000}],
        defaultClass="interactive",
    )  # fmt: skip
    raw["apiKeys"] = {"acme": {"value": KEY}}
    raw["limits"] = {"maxBodyBytes": 16384, "maxTokensLimit": 100_000}
    return raw


@pytest.fixture(scope="module")
def router() -> service.Router:
    return app.build(config.parse(_raw_config("http://127.0.0.1:1")))


async def _admitted(router: service.Router, job: intake.Job) -> None:
    async with pipeline.admitted(router, job, Outcome()):
        pass


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), raw=bodies)
def test_the_parser_and_admission_raise_only_client_errors(
    router: service.Router, kind: body.Kind, raw: bytes
) -> None:
    try:
        parsed = body.parse(kind, raw, max_tokens_limit=100_000)
        job = intake.prepare(router, parsed, tenant="acme", headers={})
        asyncio.run(_admitted(router, job))
        job.payload_for("other-model")
    except RouterError as error:
        assert 400 <= error.status < 500, (error.status, error.message)
        assert set(error.body()["error"]) == {"message", "type", "param", "code"}


# --- whole requests over HTTP -------------------------------------------------------


async def _upstream_chat(request: web.Request) -> web.StreamResponse:
    document = json.loads(await request.read())
    if document.get("stream") is True:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": []}\n\ndata: [DONE]\n\n')
        await response.write_eof()
        return response
    return web.json_response({"object": "chat.completion", "model": MODEL, "choices": []})


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


@contextlib.contextmanager
def _serving() -> Iterator[int]:
    """A router and its always-good upstream on a loop in a thread; the router's port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports = {"upstream": free_port(), "router": free_port()}
    runners: list[web.AppRunner] = []

    async def start() -> None:
        upstream = web.Application()
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            upstream.router.add_post(path, _upstream_chat)
        upstream.router.add_get("/health", _ok)
        raw = _raw_config(f"http://127.0.0.1:{ports['upstream']}")
        router_app = app.create_app(config.parse(raw))
        for application, port in ((upstream, ports["upstream"]), (router_app, ports["router"])):
            runner = web.AppRunner(application, access_log=None, handler_cancellation=True)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield ports["router"]
    finally:
        for runner in reversed(runners):
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def router_port() -> Iterator[int]:
    with _serving() as port:
        yield port


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8",
                                         "text/plain", "", "multipart/form-data"]) | header_text,
        "Authorization": st.sampled_from([f"Bearer {KEY}", "Bearer ", "Basic x", KEY])
        | header_text,
        "x-gpufleet-class": st.sampled_from(["interactive", "platinum"]) | header_text,
        "x-request-id": header_text,
        "traceparent": header_text,
        "x-session-id": header_text,
    },
)  # fmt: skip
paths = st.sampled_from(
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/stats",
     "/readyz", "/v1/nothing", "/v1/chat/completions/x", "/%2e%2e/etc", "/v1/chat/completions?x=1"]
)  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"]),
    path=paths,
    sent=headers,
    raw=bodies,
)
def test_no_request_gets_a_5xx(
    router_port: int, method: str, path: str, sent: dict[str, str], raw: bytes
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", router_port, timeout=10)
    try:
        connection.request(method, path, body=raw, headers=sent)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status < 500, (response.status, payload[:300])
    assert response.getheader("x-request-id")
    if response.status >= 400:
        error = json.loads(payload)["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_the_fuzzed_router_serves_a_valid_request(router_port: int) -> None:
    """The upstream path the property exercises works: a good request is a 200."""
    connection = http.client.HTTPConnection("127.0.0.1", router_port, timeout=10)
    document = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    try:
        connection.request(
            "POST", "/v1/chat/completions", body=json.dumps(document).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert connection.getresponse().status == 200
    finally:
        connection.close()
