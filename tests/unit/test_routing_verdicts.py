"""Retry, breaker and outcome verdicts for each thing an attempt can meet
(table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.routing import verdicts
from gpufleet.routing.verdicts import Verdict

RETRY_ON = (502, 503, 504)


@pytest.mark.parametrize(
    ("status", "streaming", "expected"),
    [
        (200, False, Verdict(False, "success", "success")),
        (200, True, Verdict(False, "none", "success")),  # counted when the stream finishes
        (400, False, Verdict(False, "success", "upstream_4xx")),  # the client's fault
        (404, False, Verdict(False, "success", "upstream_4xx")),
        (429, False, Verdict(False, "none", "upstream_busy")),  # backpressure
        (502, False, Verdict(True, "at_end", "status_502")),  # the request's end decides
        (504, False, Verdict(True, "at_end", "status_504")),
        (503, False, Verdict(True, "none", "status_503")),  # retried, never a failure
        (500, False, Verdict(False, "failure", "upstream_5xx")),  # not retried
        (507, False, Verdict(False, "failure", "upstream_5xx")),
    ],
)
def test_answer(status: int, streaming: bool, expected: Verdict) -> None:
    assert verdicts.answer(status, streaming=streaming, retry_on=RETRY_ON) == expected


def test_a_503_not_retried_is_busy_not_a_failure() -> None:
    assert verdicts.answer(503, streaming=False, retry_on=()) == Verdict(
        False, "none", "upstream_busy"
    )


@pytest.mark.parametrize(
    ("kind", "retry", "count", "label"),
    [
        ("connect_timeout", True, "failure", "connect_timeout"),
        ("first_byte_timeout", True, "failure", "timeout"),
        ("connect", True, "failure", "connect"),
        ("connection", True, "failure", "connection"),
        ("empty", True, "failure", "empty"),
        ("request_timeout", False, "none", "request_timeout"),  # nobody's fault, no time left
    ],
)
def test_failure(kind: verdicts.Failure, retry: bool, count: str, label: str) -> None:
    assert verdicts.failure(kind) == Verdict(retry, count, label)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "count", "label"),
    [
        ("finished", "success", "success"),
        ("idle_timeout", "failure", "upstream_error_mid_stream"),
        ("broken", "failure", "upstream_error_mid_stream"),
        ("request_timeout", "none", "request_timeout_mid_stream"),
    ],
)
def test_stream_end(kind: verdicts.StreamEnd, count: str, label: str) -> None:
    assert verdicts.stream_end(kind) == Verdict(False, count, label)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tried", "max_retries", "expected"), [(1, 0, False), (1, 1, True), (2, 1, False)]
)
def test_may_retry(tried: int, max_retries: int, expected: bool) -> None:
    assert verdicts.may_retry(tried, max_retries=max_retries) is expected


@pytest.mark.parametrize(
    ("statuses", "served", "expected"),
    [
        ([], False, True),
        ([502], False, True),  # one failure alone is its endpoint's
        ([502, 502], False, False),  # every endpoint alike: a poison request
        ([502, 504], False, True),
        ([502, 502], True, True),  # another endpoint served it: the two were at fault
    ],
)
def test_charged(statuses: list[int], served: bool, expected: bool) -> None:
    assert verdicts.charged(statuses, served=served) is expected
