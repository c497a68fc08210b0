"""What the router's log redaction takes out and what it leaves (table-driven): every
Authorization scheme's credential, Bearer, Basic and Token credentials wherever they
appear, keys, and nothing of the prose around them."""

from __future__ import annotations

import pytest

from gpufleet.router import redaction

BASIC = "dXNlcjpwYXNz"  # base64 of user:pass
TOKEN = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"Authorization: Basic {BASIC}", "Authorization: Basic [redacted]"),
        (f"authorization=basic {BASIC}", "authorization=basic [redacted]"),
        (f"{{'Authorization': 'Token {TOKEN}'}}", "{'Authorization': 'Token [redacted]'}"),
        (f"Proxy-Authorization: Basic {BASIC}==", "Proxy-Authorization: Basic [redacted]"),
        ("Authorization: Bearer sk-abcdefgh1234", "Authorization: Bearer [redacted]"),
        ("Authorization: opaque-key-1", "Authorization: [redacted]"),
        (f"upstream answered 401 to Basic {BASIC}", "upstream answered 401 to Basic [redacted]"),
        (f"retrying with Token {TOKEN} now", "retrying with Token [redacted] now"),
        ("bearer abc", "Bearer [redacted]"),
        (f"token=Token {TOKEN}", "token=Token [redacted]"),
        ("api_key=sk-abcdef1234", "api_key=[redacted]"),
        ("password: hunter2", "password: [redacted]"),
    ],
)
def test_credentials_are_redacted(text: str, redacted: str) -> None:
    assert redaction.redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "token budget exceeded",
        "basic functionality works",
        "prompt tokens 100, completion tokens 20",
        "Basic realm",
        "Token bucket refilled",
    ],
)
def test_prose_is_left_as_written(text: str) -> None:
    assert redaction.redact(text) == text
