"""Reading the tokens a request used from an engine's answer or a stream's last chunks."""

from __future__ import annotations

import pytest

from gpufleet.router import usage

USAGE_EVENT = b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"
RUNNING = b'data: {"usage":{"prompt_tokens":12,"completion_tokens":4}}\n\n'
TOKEN = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"usage":{"prompt_tokens":3,"completion_tokens":4}}', usage.Usage(3, 4)),
        (b'{"usage":{"prompt_tokens":3,"total_tokens":3}}', usage.Usage(3, 0)),  # embeddings
        (b'{"usage":null}', None),
        (b'{"usage":{"prompt_tokens":true}}', None),
        (b'{"usage":{"prompt_tokens":-1}}', None),
        (b"not json", None),
        (b"[1, 2]", None),
    ],
)
def test_from_body(body: bytes, expected: usage.Usage | None) -> None:
    assert usage.from_body(body) == expected


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([TOKEN, USAGE_EVENT + DONE], usage.Usage(12, 5)),
        # the usage event split over two reads, [DONE] in a third
        ([TOKEN + USAGE_EVENT[:30], USAGE_EVENT[30:], DONE], usage.Usage(12, 5)),
        # continuous usage stats: the running total of the last event counts
        ([RUNNING, USAGE_EVENT, DONE], usage.Usage(12, 5)),
        # an event cut at the start of the kept reads is skipped, not misread
        ([USAGE_EVENT[30:], TOKEN, DONE], None),
        ([TOKEN, TOKEN, DONE], None),
        ([b'data: {"usage": null}\n\n', DONE], None),
    ],
)
def test_from_stream_tail(chunks: list[bytes], expected: usage.Usage | None) -> None:
    assert usage.from_stream_tail(chunks) == expected


@pytest.mark.parametrize(
    ("events", "chat", "completion"),
    [(8, True, 6), (7, False, 6), (1, True, 0), (0, False, 0)],
)
def test_estimated_streams_count_token_events(events: int, chat: bool, completion: int) -> None:
    assert usage.estimated(events=events, prompt_estimate=9, chat=chat) == usage.Usage(
        9, completion, reported=False
    )
