"""Virtual-time load against an engine, for calibration and tests (pure).

``closed_loop`` reproduces what ``vllm bench serve --max-concurrency C --request-rate inf``
does: C clients, each sending its next request the moment the previous one finishes,
with fixed input and output lengths and prompts that share nothing (its ``random``
dataset); ``burst`` what ``--num-prompts N --request-rate inf`` does with a fixed list of
prompt and output lengths. Time advances by step durations only, so the result is exact
and instant.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

from gpufleet.sim.engine import Engine, Request


@dataclasses.dataclass(frozen=True, slots=True)
class LoadResult:
    """Aggregate figures of a finished run, in vLLM benchmark terms."""

    duration_s: float
    requests: int
    output_tokens: int
    mean_ttft_s: float
    mean_tpot_s: float
    prefill_tokens_per_s: float

    @property
    def output_throughput(self) -> float:
        return self.output_tokens / self.duration_s


def closed_loop(
    engine: Engine, *, concurrency: int, input_len: int, output_len: int, requests: int
) -> LoadResult:
    """Run ``requests`` requests through ``engine`` with ``concurrency`` clients."""
    now = 0.0
    sent = 0
    started: dict[str, float] = {}
    first: dict[str, float] = {}
    ttfts: list[float] = []
    tpots: list[float] = []
    prefill_time = 0.0
    prefill_tokens = 0

    def send() -> None:
        nonlocal sent
        rid = f"r{sent}"
        engine.add(Request(rid, input_len, output_len))
        started[rid] = now
        sent += 1

    for _ in range(min(concurrency, requests)):
        send()
    # Bounded: every step makes progress, a request needs at most
    # input_len + output_len steps, and preemption is bounded by the KV cache.
    for _ in range(requests * (input_len + output_len) * 4):
        if not engine.has_work:
            break
        result = engine.step()
        now += result.duration
        if result.work.prefill_tokens and not result.work.decode_tokens:
            prefill_time += result.duration
            prefill_tokens += result.work.prefill_tokens
        for event in result.events:
            rid = event.request_id
            if event.index == 0:
                first[rid] = now
                ttfts.append(now - started[rid])
            if event.finish_reason is not None:
                if output_len > 1:
                    tpots.append((now - first[rid]) / (output_len - 1))
                if sent < requests:
                    send()
    return LoadResult(
        duration_s=now,
        requests=len(ttfts),
        output_tokens=engine.counters.generation_tokens,
        mean_ttft_s=statistics.fmean(ttfts) if ttfts else 0.0,
        mean_tpot_s=statistics.fmean(tpots) if tpots else 0.0,
        prefill_tokens_per_s=prefill_tokens / prefill_time if prefill_time else 0.0,
    )


def burst(engine: Engine, *, inputs: Sequence[int], outputs: Sequence[int]) -> LoadResult:
    """Send every request at time 0 (``--num-prompts N --request-rate inf``) and run
    them to the end; ``mean_tpot_s`` is the mean over requests of more than one token."""
    for index, (prompt, output) in enumerate(zip(inputs, outputs, strict=True)):
        engine.add(Request(f"r{index}", prompt, max(1, output)))
    now = 0.0
    first: dict[str, float] = {}
    last: dict[str, tuple[float, int]] = {}
    for _ in range((sum(inputs) + sum(outputs)) * 4 + 1):
        if not engine.has_work:
            break
        result = engine.step()
        now += result.duration
        for event in result.events:
            first.setdefault(event.request_id, now)
            last[event.request_id] = (now, event.index + 1)
    tpots = [(at - first[r]) / (n - 1) for r, (at, n) in last.items() if n > 1]
    return LoadResult(
        duration_s=now,
        requests=len(first),
        output_tokens=engine.counters.generation_tokens,
        mean_ttft_s=statistics.fmean(first.values()) if first else 0.0,
        mean_tpot_s=statistics.fmean(tpots) if tpots else 0.0,
        prefill_tokens_per_s=0.0,
    )
