"""The router's log as an operator reads it: one INFO line per request outcome, with the
request's id, its model, tenant, endpoint, status and tokens, and neither its prompt nor
its key; in JSON with --log-format json."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from gpufleet import logsetup
from gpufleet.router import redaction
from tests.router.peers import MODEL, Sim, chat, router_config, serve_router

pytestmark = pytest.mark.slow
KEY = "sk-logging-0123456789abcdef"
PROMPT = "a-prompt-nobody-may-log"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the router logs at INFO, as ``--log-format json`` writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logsetup.JsonFormatter())
    handler.addFilter(logsetup.RequestIdFilter())
    handler.addFilter(redaction.Redactor())
    logger = logging.getLogger("gpufleet.router")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_one_line_per_request_outcome(sims: tuple[Sim, Sim], json_lines: io.StringIO) -> None:
    fast, _ = sims
    raw = router_config(
        [fast.backend()],
        admission={
            "requireApiKey": True,
            "tenants": [{"name": "acme", "apiKeySecretRef": {"name": "acme"}}],
        },
    )
    raw["apiKeys"] = {"acme": {"value": KEY}}
    headers = {"Authorization": f"Bearer {KEY}", "x-request-id": "req-42"}
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=chat(PROMPT),
                                headers=headers) as response:  # fmt: skip
            assert response.status == 200
            await response.read()
        unknown = chat(PROMPT) | {"model": "gpt-9"}
        headers["x-request-id"] = "req-43"
        async with session.post(url + "/v1/chat/completions", json=unknown,
                                headers=headers) as response:  # fmt: skip
            assert response.status == 404
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    outcomes = [r for r in records if r["message"].startswith("request ")]
    assert [r["request_id"] for r in outcomes] == ["req-42", "req-43"]
    served = outcomes[0]
    assert served["level"] == "INFO" and served["logger"] == "gpufleet.router"
    assert served["fields"]["model"] == MODEL and served["fields"]["tenant"] == "acme"
    assert served["fields"]["status"] == 200 and served["fields"]["outcome"] == "success"
    assert served["fields"]["completion_tokens"] == 8
    assert served["fields"]["endpoint"] == fast.url
    assert "status=200" in served["message"] and "tenant=acme" in served["message"]
    assert outcomes[1]["fields"]["status"] == 404
    text = json_lines.getvalue()
    assert PROMPT not in text and KEY not in text
