"""What the throughput learner and the performance predictor are told: finished
requests and the engines' counters.

Streams report their decode rate (``stream``); answers that are not streamed report
their usage's completion tokens over the request's whole duration (``whole``). With a
Prometheus source, each signal refresh also reads every engine's generated tokens per
second and its mean running requests over the same one-minute window (``counter``).
See ``gpufleet.routing.throughput`` for how the samples become weights.

The predictor (``gpufleet.routing.performance``) gets each first token's delay with
the prefill that was ahead of it (unless the endpoint's KV cache was too full to take
the request at once: that delay is queueing, predicted apart by
``gpufleet.routing.queueing``), each finished stream's seconds per token with the
batch it ran in (the mean of the endpoint's requests in flight when it was sent and
when it ended), and each busy counter read as a time per output token: mean running
requests / generated tokens per second, at that batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gpufleet.api.runtime import MetricNames
from gpufleet.promquery import series
from gpufleet.router import service
from gpufleet.router.registry import Lease
from gpufleet.routing import throughput


def completion_tokens(body: bytes) -> int | None:
    """``usage.completion_tokens`` of an OpenAI JSON answer, or None when absent."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    usage = document.get("usage") if isinstance(document, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def first_token(router: service.Router, lease: Lease, *, seconds: float, streamed: bool) -> None:
    """The first token came ``seconds`` after the attempt was sent: a stream's first
    chunk with output (``gpufleet.router.firsttoken``), or an answer that is not streamed,
    which arrives whole and so is no first token's delay."""
    lease.first_token()
    if not streamed:
        return
    endpoint, now = lease.slot.endpoint.id, router.clock()
    if lease.predicted is not None:  # the prediction included any wait for KV room
        router.spread.observe(endpoint, "ttft", predicted=lease.predicted.ttft_s,
                              observed=seconds, now=now)  # fmt: skip
    if not lease.waited_for_kv:  # a wait for KV room is no prefill time
        router.predictor.observe_ttft(
            endpoint, prefill_tokens=lease.prefill_ahead, seconds=seconds, now=now
        )


def stream_finished(
    router: service.Router, lease: Lease, *, events: int, tokens: int, since: float
) -> None:
    """A stream of ``tokens`` completion tokens ended normally: ``events`` SSE events
    after its first token's chunk, which came at ``since``.

    The learner's rate counts the events (a usage chunk and ``[DONE]`` too; every
    endpoint's streams carry the same, and rates are only compared between endpoints);
    the seconds per token are the ``tokens - 1`` intervals after the first, as the
    router's accounting judges TPOT.
    """
    now, endpoint = router.clock(), lease.slot.endpoint.id
    router.learner.observe(endpoint, tokens=events, seconds=now - since, now=now)
    if tokens > 1:
        batch = (lease.batch + lease.slot.in_flight) / 2
        tpot = (now - since) / (tokens - 1)
        router.predictor.observe_tpot(endpoint, batch=batch, seconds=tpot, now=now)
        if lease.predicted is not None:
            router.spread.observe(endpoint, "tpot", predicted=lease.predicted.tpot_s,
                                  observed=tpot, now=now)  # fmt: skip


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
        if running >= throughput.COUNTER_MIN_RUNNING and tokens_per_s > 0:
            router.predictor.observe_tpot(
                endpoint, batch=running, seconds=running / tokens_per_s, now=now
            )
