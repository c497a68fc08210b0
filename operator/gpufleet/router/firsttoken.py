"""When a stream's first token came: the first chunk that carries output, which need
not be its first byte.

A chat stream opens with an event that names the role only. vLLM sends it together
with the first token, after the prompt is processed; other servers (and ``gpufleet
sim``) send it as soon as they accept the request. Taken as the first token, that event
would make every time to first token look like a network round trip, take the
request's prompt off the prefill queued ahead of later requests before it was
prefilled, and count the prefill into its time per output token — the performance
curves would then see no queue at all. So a stream's first token is the first event
with content, reasoning, tool calls, text or a finish reason (``carries_output``);
an event that is not JSON counts as output, so a server whose events cannot be read
is timed by its first byte as before. Events are judged whole: a read may end inside
one (``Lines`` keeps that part for the next read), and a cut role event is no output.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gpufleet.router import learning, service
from gpufleet.router.registry import Lease

_DATA = b"data:"
_OUTPUT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls", "text")


def carries_output(chunk: bytes) -> bool:
    """Whether any SSE event in ``chunk`` carries generated output (or ends the stream)."""
    for line in chunk.split(b"\n"):
        payload = line.strip()
        if payload.startswith(_DATA) and _event_output(payload[len(_DATA) :].strip()):
            return True
    return False


class Lines:
    """Whole lines of a stream read in arbitrary pieces: ``complete`` returns what ends
    with a newline and keeps the rest for the next piece."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def complete(self, chunk: bytes) -> bytes:
        whole, newline, self._rest = (self._rest + chunk).rpartition(b"\n")
        return whole + newline


def _event_output(payload: bytes) -> bool:
    if payload == b"[DONE]":
        return True
    try:
        document = json.loads(payload)
    except ValueError:
        return True
    if not isinstance(document, dict) or "error" in document:
        return True
    choices = document.get("choices")
    return isinstance(choices, list) and any(_choice_output(c) for c in choices)


def _choice_output(choice: object) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("finish_reason") is not None or choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(delta.get(f) for f in _OUTPUT_FIELDS)


class Marker:
    """Follows one streamed attempt's chunks until the first that carries output, then
    tells the lease and the performance learner (``learning.first_token``) once, and
    ``then`` (with the time) when given.

    ``at`` is when that was (router clock; None until then); ``events_after`` the SSE
    events that followed it, the stream's TPOT sample.
    """

    __slots__ = (
        "_clock", "_lines", "_router", "_sent", "_then", "at", "events", "lease", "through",
    )  # fmt: skip

    def __init__(
        self,
        router: service.Router,
        lease: Lease,
        *,
        sent: float,
        then: Callable[[float], None] | None = None,
    ) -> None:
        self._router, self._clock, self._sent, self._then = router, router.clock, sent, then
        self.lease = lease
        self.at: float | None = None
        self.events = 0
        self.through = 0  # events up to and including the first token's chunk
        self._lines = Lines()

    def seen(self, chunk: bytes) -> None:
        """One chunk of the stream, in order."""
        self.events += chunk.count(_DATA)
        if self.at is None and carries_output(self._lines.complete(chunk)):
            self.at, self.through = self._clock(), self.events
            seconds = self.at - self._sent
            learning.first_token(self._router, self.lease, seconds=seconds, streamed=True)
            if self._then is not None:
                self._then(self.at)

    @property
    def events_after(self) -> int:
        return self.events - self.through if self.at is not None else 0
