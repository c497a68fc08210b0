"""The router's trace identity (pure): which x-request-id and traceparent it keeps."""

from __future__ import annotations

import itertools

import pytest

from gpufleet.router import tracing

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (PARENT, True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),
        (PARENT + "-extra", False),  # version 00 has exactly four fields
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_valid_traceparent(value: str, valid: bool) -> None:
    assert tracing.valid_traceparent(value) is valid


def _tokens() -> tracing.Token:
    counter = itertools.count(1)
    return lambda n: f"{next(counter):0{2 * n}x}"


def test_a_clients_identity_is_kept() -> None:
    headers = {"x-request-id": "req-1", "traceparent": PARENT, "tracestate": "a=1"}
    trace = tracing.of(headers, token=_tokens())
    assert trace == tracing.Trace("req-1", PARENT, "a=1")
    assert trace.upstream_headers() == headers


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-request-id": "has space", "traceparent": "00-xyz", "tracestate": "a=1"},
     {"x-request-id": "x" * 129}],
)  # fmt: skip
def test_a_missing_or_unusable_identity_is_made(headers: dict[str, str]) -> None:
    trace = tracing.of(headers, token=_tokens())
    assert trace.request_id == "0" * 31 + "1"
    assert trace.traceparent == f"00-{'0' * 31}2-{'0' * 15}3-01"
    assert trace.tracestate is None
