"""A stream's first token is its first event with output, not its role-only opening."""

from __future__ import annotations

import pytest

from gpufleet.router import firsttoken

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":" abcd"},"finish_reason":null}]}\n\n'


@pytest.mark.parametrize(
    ("chunk", "output"),
    [
        (ROLE, False),
        (TOKEN, True),
        (ROLE + TOKEN, True),  # both in one read
        (b'data: {"choices":[{"index":0,"text":"x","finish_reason":null}]}\n\n', True),
        (b'data: {"choices":[{"index":0,"text":"","finish_reason":null}]}\n\n', False),
        (b'data: {"choices":[{"delta":{"reasoning_content":"hm"}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', True),
        (b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n', False),
        (b'data: {"error":{"message":"boom"}}\n\n', True),
        (b"data: [DONE]\n\n", True),
        (b": keep-alive\n\n", False),
        (b"", False),
    ],
)
def test_carries_output(chunk: bytes, output: bool) -> None:
    assert firsttoken.carries_output(chunk) is output


def test_an_event_cut_between_reads_is_judged_whole() -> None:
    # A role event split across reads is still no output (judged in pieces, its first
    # half failed to parse and counted as the first token); a token split the same way
    # counts once its line ends.
    lines = firsttoken.Lines()
    reads = [ROLE[:30], ROLE[30:] + TOKEN[:25], TOKEN[25:]]
    assert [firsttoken.carries_output(lines.complete(r)) for r in reads] == [False, False, True]
