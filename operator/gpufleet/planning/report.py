"""How ``gpufleet plan`` shows plans: a table for people, JSON or YAML for programs. Pure.

Each GPU's plan is the planner's choice (the smallest workable TP); ``options`` are its
plans at every feasible TP, so a reader sees what a larger TP buys in KV cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpufleet.planning.planner import VariantPlan


def as_json(plan: VariantPlan, options: Sequence[VariantPlan] = ()) -> dict[str, Any]:
    """One plan as a JSON object with camelCase keys; ``tensorParallelSize`` null if
    infeasible; ``options`` one object per feasible TP (TP, KV tokens, full sequences)."""
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
        "options": [_option(o) for o in options],
    }


def _option(plan: VariantPlan) -> dict[str, Any]:
    return {
        "tensorParallelSize": plan.tensor_parallel_size,
        "weightsPerGpuBytes": plan.weights_per_gpu_bytes,
        "kvCacheTokens": plan.kv_cache_tokens,
        "maxConcurrentSequences": plan.max_concurrent_sequences,
    }


_HEADERS = ("GPU", "FITS", "TP", "WEIGHTS/GPU", "USABLE/GPU", "KV TOKENS", "FULL SEQS")


def sections(
    plans: Sequence[VariantPlan], options: Mapping[str, Sequence[VariantPlan]]
) -> tuple[str, list[tuple[str, ...]], list[str]]:
    """The table's heading, its rows (the first is the header: one row per GPU) and the
    lines after it: the KV capacity at every feasible TP of each GPU (``options``, by GPU
    name), then the reason of each infeasible one, each part after a blank line."""
    if not plans:
        return "", [], []
    first = plans[0]
    heading = (
        f"{first.model}  dtype {first.dtype}  maxModelLen {first.max_model_len}  "
        f"weights {_gb(first.weights_bytes)}  KV {first.kv_bytes_per_token // 1024} KiB/token"
    )
    rows = [_HEADERS, *(_row(p) for p in plans)]
    width = max(len(r[0]) for r in rows)
    sizes = [_sizes(p.gpu, options[p.gpu], width) for p in plans if options.get(p.gpu)]
    reasons = [f"{p.gpu}: {p.reason}" for p in plans if not p.feasible]
    notes = ["", "KV tokens (full sequences) at every feasible TP:", *sizes] if sizes else []
    return heading, rows, notes + (["", *reasons] if reasons else [])


def _sizes(gpu: str, options: Sequence[VariantPlan], width: int) -> str:
    each = (
        f"TP {o.tensor_parallel_size}: {o.kv_cache_tokens:,} ({o.max_concurrent_sequences})"
        for o in options
    )
    return f"  {gpu.ljust(width)}  " + "; ".join(each)


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
