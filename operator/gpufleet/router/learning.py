"""What the throughput learner is told: finished requests and the engines' counters.

Streams report their decode rate (``stream``); answers that are not streamed report
their usage's completion tokens over the request's whole duration (``whole``). With a
Prometheus source, each signal refresh also reads every engine's generated tokens per
second and its mean running requests over the same one-minute window (``counter``).
See ``gpufleet.routing.throughput`` for how the samples become weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gpufleet.api.runtime import MetricNames
from gpufleet.promquery import series
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


def running_query(names: MetricNames) -> str:
    """Mean running requests per series over the generated-token rate's window."""
    return f"avg_over_time({names.requests_running}[{series.RATE_WINDOW}])"


def counter_queries(names: MetricNames) -> list[str]:
    return [series.generation_rate_query(names), running_query(names)]


def counter_reads(
    results: series.Results, names: MetricNames, keys: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    """Endpoint -> (generated tokens/s, mean running requests), where both were read.

    Tokens of a replica's series add up; running requests are one engine's count, so
    its series are averaged.
    """
    tokens = series.sum_by_owner(results.get(series.generation_rate_query(names), []), keys)
    running = series.mean_by_owner(results.get(running_query(names), []), keys)
    return {e: (tokens[e], running[e]) for e in tokens.keys() & running.keys()}


def counters_read(
    router: service.Router, reads: Mapping[str, tuple[float, float]], *, now: float
) -> None:
    """Feed one refresh's counter reads to the learner (idle engines are skipped there)."""
    for endpoint, (tokens_per_s, running) in reads.items():
        router.learner.observe_counter(
            endpoint, tokens_per_s=tokens_per_s, running=running, now=now
        )
