"""What the proxy tells the throughput learner about a finished request.

Streams report their decode rate (``stream``); answers that are not streamed report
their usage's completion tokens over the request's whole duration (``whole``). See
``gpufleet.routing.throughput`` for how the samples become weights.
"""

from __future__ import annotations

import json

from gpufleet.router import service


def completion_tokens(body: bytes) -> int | None:
    """``usage.completion_tokens`` of an OpenAI JSON answer, or None when absent."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    usage = document.get("usage") if isinstance(document, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def stream_finished(router: service.Router, endpoint: str, *, events: int, since: float) -> None:
    """A stream ended normally: ``events`` SSE events after the first, since ``since``.

    The usage chunk and ``[DONE]`` count too; every endpoint's streams carry the same
    two, and rates are only compared between endpoints.
    """
    now = router.clock()
    router.learner.observe(endpoint, tokens=events, seconds=now - since, now=now)


def answer_finished(router: service.Router, endpoint: str, *, body: bytes, since: float) -> None:
    """A 200 answer that was not streamed arrived whole; ``since`` is when it was sent."""
    tokens = completion_tokens(body)
    if tokens is None:
        return
    now = router.clock()
    router.learner.observe(endpoint, tokens=tokens, seconds=now - since, now=now, kind="whole")
