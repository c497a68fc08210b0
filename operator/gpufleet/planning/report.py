"""How ``gpufleet plan`` shows plans: a table for people, JSON for programs. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpufleet.planning.planner import VariantPlan


def as_json(plan: VariantPlan) -> dict[str, Any]:
    """One plan as a JSON object with camelCase keys; ``tensorParallelSize`` null if infeasible."""
    return {
        "model": plan.model,
        "gpu": plan.gpu,
        "dtype": plan.dtype,
        "feasible": plan.feasible,
        "tensorParallelSize": plan.tensor_parallel_size,
        "maxModelLen": plan.max_model_len,
        "weightsBytes": plan.weights_bytes,
        "weightsPerGpuBytes": plan.weights_per_gpu_bytes,
        "usableBytesPerGpu": plan.usable_bytes_per_gpu,
        "kvBytesPerToken": plan.kv_bytes_per_token,
        "kvCacheTokens": plan.kv_cache_tokens,
        "maxConcurrentSequences": plan.max_concurrent_sequences,
        "reason": plan.reason or None,
    }


_HEADERS = ("GPU", "FITS", "TP", "WEIGHTS/GPU", "USABLE/GPU", "KV TOKENS", "FULL SEQS")


def table(plans: Sequence[VariantPlan]) -> str:
    """A heading, one aligned row per GPU, then the reason of each infeasible one."""
    if not plans:
        return ""
    first = plans[0]
    heading = (
        f"{first.model}  dtype {first.dtype}  maxModelLen {first.max_model_len}  "
        f"weights {_gb(first.weights_bytes)}  KV {first.kv_bytes_per_token // 1024} KiB/token"
    )
    rows = [_HEADERS, *(_row(p) for p in plans)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    reasons = [f"{p.gpu}: {p.reason}" for p in plans if not p.feasible]
    return "\n".join([heading, "", *lines, *(["", *reasons] if reasons else [])])


def _row(plan: VariantPlan) -> tuple[str, ...]:
    if not plan.feasible:
        return (
            plan.gpu,
            "no",
            "-",
            _gb(plan.weights_per_gpu_bytes),
            _gb(plan.usable_bytes_per_gpu),
            "-",
            "-",
        )
    return (
        plan.gpu,
        "yes",
        str(plan.tensor_parallel_size),
        _gb(plan.weights_per_gpu_bytes),
        _gb(plan.usable_bytes_per_gpu),
        f"{plan.kv_cache_tokens:,}",
        str(plan.max_concurrent_sequences),
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"
