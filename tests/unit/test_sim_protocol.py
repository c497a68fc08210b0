"""vLLM's wire format: request validation, errors, chunk shapes, faults, tokens."""

from __future__ import annotations

import random

import pydantic
import pytest

from gpufleet.sim import faults, protocol, tokens


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[]", 400, None),
        (b'{"prompt": "hi"}', 400, "model"),
        (b'{"model": "m"}', 400, "prompt"),
        (b'{"model": "m", "prompt": "hi", "max_tokens": 0}', 400, "max_tokens"),
    ],
)
def test_bad_completion_requests(raw: bytes, status: int, param: str | None) -> None:
    with pytest.raises(protocol.ApiError) as info:
        protocol.parse("completion", raw)
    assert info.value.status == status
    assert info.value.param == param
    assert info.value.body()["error"]["type"] == "BadRequestError"  # type: ignore[index]


def test_chat_request_accepts_content_parts_and_unknown_fields() -> None:
    raw = (
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],'
        b'"temperature":0.2,"max_completion_tokens":5}'
    )
    parsed = protocol.parse("chat", raw)
    assert isinstance(parsed, protocol.ChatRequest)
    assert parsed.messages[0].text() == "hi"
    assert parsed.requested_max_tokens == 5


def test_context_error_names_the_numbers() -> None:
    error = protocol.context_error(requested=9000, prompt=12, max_model_len=8192)
    assert error.status == 400 and error.param == "max_tokens"
    assert "8192" in error.message and "9000" in error.message


def test_chunks_have_vllm_shapes() -> None:
    reply = protocol.Reply("chat", "chatcmpl-1", "m", 1)
    assert reply.role_chunk()["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    last = reply.token_chunk(" x", "length")
    assert last["object"] == "chat.completion.chunk"
    assert last["choices"][0]["finish_reason"] == "length"
    usage = reply.usage_chunk(3, 2)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 5
    assert protocol.sse({"a": 1}) == b'data: {"a":1}\n\n'


def test_token_estimate_is_stable_and_prefix_consistent() -> None:
    text = "Hello, world! 12345 tokens are estimated."
    assert tokens.count(text) == len(tokens.token_ids(text)) == 15
    a = tokens.block_hashes(tokens.token_ids("word " * 40 + "tail one"), 16)
    b = tokens.block_hashes(tokens.token_ids("word " * 40 + "tail two"), 16)
    assert a[:2] == b[:2] and len(a) == 2


def test_faults_decide_by_rate() -> None:
    config = faults.FaultConfig(error_rate=0.25, oom_rate=0.25)
    rng = random.Random(3)
    outcomes = [faults.decide(config, rng).outcome for _ in range(4000)]
    assert 0.2 < outcomes.count("error") / 4000 < 0.3
    assert 0.2 < outcomes.count("oom") / 4000 < 0.3
    assert faults.decide(faults.FaultConfig(), rng).outcome == "serve"


def test_fault_changes_are_validated() -> None:
    config = faults.FaultConfig().merged({"slowdown": 3})
    assert config.slowdown == 3
    with pytest.raises(pydantic.ValidationError):
        config.merged({"error_rate": 2})
    with pytest.raises(pydantic.ValidationError):
        config.merged({"no_such_fault": True})
