"""A request's expected cost: tokens in and out, predicted KV-cache MB, and whether it
counts as large (the ``large_input``, ``large_kv`` and ``memory_pressure`` triggers).

Input tokens are characters / ``charsPerToken`` unless a tokenizer count is given;
output tokens are ``max_tokens`` (or the class default) x ``expectedOutputFraction``,
times ``n`` (each choice decodes its own tokens; the prompt is prefilled once);
KV MB is (input + output) x the model's KV bytes per token (``gpufleet.planning``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

from gpufleet.api.traffic import LargeRequests, TokenEstimation
from gpufleet.planning import models, planner
from gpufleet.routing.model import Candidate

Trigger = Literal["large_input", "large_kv", "memory_pressure"]
TRIGGERS: tuple[Trigger, ...] = ("large_input", "large_kv", "memory_pressure")
MB = 1024 * 1024
# Prefill runs many tokens per engine step while decode runs one per sequence, so an
# input token costs the GPU far less time than an output token; this weight turns a
# request into "decode-token equivalents" for load balancing (the simulator's
# performance model puts prefill at 5-20x decode throughput per token on these GPUs).
INPUT_TOKEN_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    kv_mb: float

    @property
    def cost(self) -> float:
        return request_cost(self.input_tokens, self.output_tokens)


def request_cost(input_tokens: int, output_tokens: int) -> float:
    """Load a request adds to an endpoint, in decode-token equivalents."""
    return input_tokens * INPUT_TOKEN_WEIGHT + output_tokens


def input_tokens(chars: int, estimation: TokenEstimation) -> int:
    """Heuristic token count of ``chars`` characters (at least 1)."""
    return max(1, math.ceil(chars / estimation.chars_per_token))


def kv_bytes_per_token(model: str) -> int:
    """The catalog model's KV bytes per token (all GPUs); 0 when the model is unknown."""
    try:
        return planner.kv_bytes_per_token(models.get(model))
    except models.UnknownModel:
        return 0


def estimate(
    *,
    input_token_count: int,
    max_tokens: int | None,
    estimation: TokenEstimation,
    kv_bytes: int,
    choices: int = 1,
) -> Estimate:
    """The estimate of one request; ``max_tokens`` None takes ``defaultMaxTokens``."""
    requested = max_tokens if max_tokens is not None else estimation.default_max_tokens
    output = max(1, math.ceil(requested * estimation.expected_output_fraction)) * choices
    kv_mb = (input_token_count + output) * kv_bytes / MB
    return Estimate(input_token_count, output, kv_mb)


def memory_percent(candidates: Sequence[Candidate]) -> float | None:
    """Mean memory pressure of the candidates in percent; None without signals.

    vLLM preallocates ``gpu_memory_utilization`` of GPU memory at start, so DCGM's
    framebuffer figure sits near 90 % whatever the load; KV-cache usage is the memory
    that actually fills up, and is used whenever it is known.
    """
    values = [v for v in (_pressure(c) for c in candidates) if v is not None]
    return sum(values) / len(values) if values else None


def _pressure(candidate: Candidate) -> float | None:
    signals = candidate.load.signals
    if signals is None:
        return None
    if signals.kv_usage is not None:
        return signals.kv_usage * 100
    return signals.gpu_memory_percent


def trigger(est: Estimate, policy: LargeRequests, memory_pct: float | None) -> Trigger | None:
    """The first large-request trigger that fires, or None (also when disabled)."""
    if not policy.enabled:
        return None
    if est.input_tokens > policy.input_tokens:
        return "large_input"
    if est.kv_mb > policy.predicted_kv_mb:
        return "large_kv"
    pressure = policy.memory_pressure
    if (
        memory_pct is not None
        and memory_pct > pressure.gpu_memory_percent
        and (est.input_tokens > pressure.input_tokens or est.kv_mb > pressure.predicted_kv_mb)
    ):
        return "memory_pressure"
    return None
