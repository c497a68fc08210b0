"""What the router does after each thing that can happen to an attempt: retry or not,
what the endpoint's circuit breaker counts, and the outcome's label. Pure.

Breaker bookkeeping: connect errors, connect, first-byte and idle timeouts, 5xx and
streams that break off (or end before their first chunk) count as failures, except
503, which a busy engine answers (backpressure, as is 429); a request timeout counts
as nothing (the request's length is at fault, not the endpoint); any other answer is a
success, a stream only once it has finished. A retried error status is counted when
the request ends (``AT_END``), and not at all when every endpoint tried failed it with
the same status (``charged``): that failure follows the request, not the endpoints.

Retries happen only before the first byte: for the failures ``failure`` names and the
5xx statuses the policy retries on, within ``maxRetries`` (``may_retry``) and the
router-wide retry budget (``gpufleet.routing.retrybudget``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Final, Literal

from gpufleet.routing import breaker

# What the endpoint's breaker counts: a failure or a success now, the request's end
# decides (a retried error status), or nothing.
Count = Literal["failure", "success", "at_end", "none"]
FAILURE: Final = "failure"
SUCCESS: Final = "success"
AT_END: Final = "at_end"
NONE: Final = "none"
# What went wrong before the first byte: a connect timeout, no answer within the
# first-byte timeout, a refused or failed connection, the whole request's time ran out,
# a stream that ended before its first chunk.
Failure = Literal[
    "connect_timeout", "first_byte_timeout", "connect", "connection", "request_timeout", "empty"
]
# How a stream that reached the client ended.
StreamEnd = Literal["finished", "idle_timeout", "broken", "request_timeout"]


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """``retry``: try another endpoint (before the first byte only); ``count``: what
    the endpoint's breaker counts; ``label``: why it is retried when ``retry``, else
    the request's outcome label (``success`` where nothing went wrong)."""

    retry: bool
    count: Count
    label: str


_FAILURES: dict[Failure, Verdict] = {
    "connect_timeout": Verdict(True, FAILURE, "connect_timeout"),
    "first_byte_timeout": Verdict(True, FAILURE, "timeout"),
    "connect": Verdict(True, FAILURE, "connect"),
    "connection": Verdict(True, FAILURE, "connection"),
    "empty": Verdict(True, FAILURE, "empty"),
    # No time is left to retry in; charged to no endpoint.
    "request_timeout": Verdict(False, NONE, "request_timeout"),
}
_STREAM_ENDS: dict[StreamEnd, Verdict] = {
    "finished": Verdict(False, SUCCESS, "success"),
    "idle_timeout": Verdict(False, FAILURE, "upstream_error_mid_stream"),
    "broken": Verdict(False, FAILURE, "upstream_error_mid_stream"),
    "request_timeout": Verdict(False, NONE, "request_timeout_mid_stream"),
}


def failure(kind: Failure) -> Verdict:
    """An attempt that got no answer."""
    return _FAILURES[kind]


def answer(status: int, *, streaming: bool, retry_on: Collection[int]) -> Verdict:
    """An upstream answered ``status``; ``streaming`` when it is a 200 stream, whose
    success is counted when it finishes (``stream_end``)."""
    if status >= 500 and status in retry_on:
        return Verdict(True, AT_END if status != 503 else NONE, f"status_{status}")
    if status >= 500 and status != 503:
        return Verdict(False, FAILURE, label(status))
    if status in (429, 503) or streaming:
        return Verdict(False, NONE, label(status))
    return Verdict(False, SUCCESS, label(status))


def stream_end(kind: StreamEnd) -> Verdict:
    """A stream the client was already reading ended."""
    return _STREAM_ENDS[kind]


def label(status: int) -> str:
    """The outcome label of a request answered with an upstream's ``status``."""
    if status < 400:
        return "success"
    return "upstream_busy" if status in (429, 503) else f"upstream_{status // 100}xx"


def may_retry(tried: int, *, max_retries: int) -> bool:
    """Whether a request that failed on ``tried`` endpoints may try another (the retry
    budget is asked only then)."""
    return tried <= max_retries


def charged(statuses: Sequence[int], *, served: bool) -> bool:
    """Whether a request's retried error statuses (``AT_END``, one per endpoint tried,
    in order) count against their endpoints: not when they follow the request."""
    return not breaker.follows_request(statuses, served=served)
