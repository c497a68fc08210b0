"""The tensor-parallel / memory / KV-cache planner: does a model fit a GPU generation?

Pure functions over ``ModelArch`` and ``GpuSpec``. The math (see docs/planner.md):

- weights = embedding parameters x 2 B + other parameters x bytes of the weight dtype
  (vLLM keeps embeddings and the LM head unquantized); each GPU holds weights / TP;
- KV bytes per token = 2 (K and V) x layers x KV heads x head dim x KV-dtype bytes; a GPU
  holds max(1, KV heads / TP) of the heads, because vLLM replicates KV heads when TP
  exceeds their number;
- usable bytes per GPU = reported memory x gpu_memory_utilization - runtime overhead;
- KV cache = usable - weights per GPU, in whole blocks of 16 tokens (vLLM's block size).

TP is the smallest of 1, 2, 4, 8 that is ≤ the GPUs per node, splits the heads as vLLM
requires, and leaves room for ``min_sequences`` full-length sequences; an explicit TP is
validated the same way. An infeasible plan says why, with numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TypedDict, Unpack

from gpufleet.hardware.catalog import GpuSpec
from gpufleet.planning import precision
from gpufleet.planning.models import ModelArch

GIB = 1024**3
MIB = 1024**2

# vLLM's --gpu-memory-utilization default (vllm/engine/arg_utils.py, EngineArgs).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# The memory vLLM needs on each GPU besides weights and KV cache, inside its
# gpu_memory_utilization budget: the CUDA context and cuBLAS workspaces (~0.5 GiB), the
# activation peak of its profiling run at the default max_num_batched_tokens plus the
# sampler's fp32 logits (~0.5-1 GiB for models up to 405B at TP 8), the CUDA-graph pool
# (~0.3-0.5 GiB) and, at TP > 1, NCCL buffers. 2 GiB covers what vLLM logs for the
# catalog's models; it is a parameter for when a deployment measures otherwise.
RUNTIME_OVERHEAD_BYTES = 2 * GIB
# vLLM's own start-up check: the KV cache must hold one max_model_len sequence.
DEFAULT_MIN_SEQUENCES = 1
TP_SIZES = (1, 2, 4, 8)
# vLLM's default KV-cache block size (tokens per block) on CUDA.
KV_BLOCK_TOKENS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class VariantPlan:
    """The plan of one model on one GPU generation.

    ``tensor_parallel_size`` is None and ``kv_cache_tokens`` 0 when ``feasible`` is
    false; ``reason`` is empty when feasible. ``kv_bytes_per_token`` is the whole
    replica's KV footprint of one token (what a request of n tokens pins: n x it);
    ``kv_cache_tokens`` is how many tokens the replica's KV cache holds.
    """

    model: str
    gpu: str
    dtype: str
    feasible: bool
    tensor_parallel_size: int | None
    max_model_len: int
    weights_bytes: int
    weights_per_gpu_bytes: int
    usable_bytes_per_gpu: int
    kv_bytes_per_token: int
    kv_cache_tokens: int
    max_concurrent_sequences: int
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Inputs:
    model: ModelArch
    gpu: GpuSpec
    dtype: str
    kv_cache_dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    gpus_per_node: int
    min_sequences: int
    runtime_overhead_bytes: int

    @property
    def usable(self) -> int:
        return usable_bytes_per_gpu(
            self.gpu,
            gpu_memory_utilization=self.gpu_memory_utilization,
            runtime_overhead_bytes=self.runtime_overhead_bytes,
        )


def weights_bytes(model: ModelArch, dtype: str) -> int:
    """Bytes of all weights at ``dtype``; embeddings and LM head stay at 16 bit."""
    per_weight = precision.weight_bytes(dtype)
    embedding = min(model.embedding_parameters, model.parameters)
    return math.ceil(embedding * 2 + (model.parameters - embedding) * per_weight)


def kv_bytes_per_token(model: ModelArch, kv_cache_dtype: str = "auto") -> int:
    """2 x layers x KV heads x head dim x KV-dtype bytes: one token's K and V, all GPUs."""
    return _kv_bytes(model, model.num_kv_heads, kv_cache_dtype)


def kv_bytes_per_token_per_gpu(model: ModelArch, tp: int, kv_cache_dtype: str = "auto") -> int:
    """One token's KV bytes on each of ``tp`` GPUs (KV heads replicate when TP > heads)."""
    return _kv_bytes(model, max(1, model.num_kv_heads // tp), kv_cache_dtype)


def _kv_bytes(model: ModelArch, heads: int, kv_cache_dtype: str) -> int:
    return 2 * model.num_layers * heads * model.head_dim * precision.kv_bytes(kv_cache_dtype)


def usable_bytes_per_gpu(
    gpu: GpuSpec,
    *,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    runtime_overhead_bytes: int = RUNTIME_OVERHEAD_BYTES,
) -> int:
    """Reported memory x utilization - runtime overhead, never below zero."""
    return max(0, int(gpu.memory_mib * MIB * gpu_memory_utilization) - runtime_overhead_bytes)


def head_split_problem(model: ModelArch, tp: int) -> str:
    """Why vLLM cannot split ``model``'s heads over ``tp`` GPUs; empty when it can.

    vLLM requires TP to divide the attention heads, and either divide the KV heads or be
    a multiple of them (it then replicates each KV head on TP / KV-heads GPUs).
    """
    heads, kv = model.num_attention_heads, model.num_kv_heads
    if heads % tp:
        return (
            f"tensorParallelSize {tp} does not divide the {heads} attention heads of {model.name}"
        )
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        return (
            f"tensorParallelSize {tp} neither divides nor is a multiple of the {kv} KV heads "
            f"of {model.name}"
        )
    return ""


def plan_variant(
    model: ModelArch,
    gpu: GpuSpec,
    *,
    dtype: str = "bf16",
    kv_cache_dtype: str = "auto",
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    gpus_per_node: int | None = None,
    min_sequences: int = DEFAULT_MIN_SEQUENCES,
    runtime_overhead_bytes: int = RUNTIME_OVERHEAD_BYTES,
) -> VariantPlan:
    """Plan ``model`` on ``gpu``: the smallest workable TP, or the given one, validated.

    ``max_model_len`` defaults to the model's context, ``gpus_per_node`` to the
    generation's ``max_gpus_per_node``. Never raises for a model that does not fit (the
    plan is infeasible, with a reason); raises ``ValueError`` for arguments no caller
    should pass (unknown dtype, utilization outside (0, 1], non-positive counts).
    """
    inputs = _inputs(
        model, gpu, dtype, kv_cache_dtype, max_model_len, gpu_memory_utilization,
        gpus_per_node, min_sequences, runtime_overhead_bytes,
    )  # fmt: skip
    if inputs.max_model_len > model.max_context:
        return _infeasible(
            inputs,
            f"maxModelLen {inputs.max_model_len} exceeds the {model.max_context}-token "
            f"context of {model.name}",
        )
    if tensor_parallel_size is not None:
        return _plan_explicit(inputs, tensor_parallel_size)
    return _plan_auto(inputs)


def _inputs(
    model: ModelArch,
    gpu: GpuSpec,
    dtype: str,
    kv_cache_dtype: str,
    max_model_len: int | None,
    gpu_memory_utilization: float,
    gpus_per_node: int | None,
    min_sequences: int,
    runtime_overhead_bytes: int,
) -> _Inputs:
    precision.weight_bytes(dtype)
    precision.kv_bytes(kv_cache_dtype)
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    inputs = _Inputs(
        model, gpu, dtype, kv_cache_dtype, max_model_len or model.max_context,
        gpu_memory_utilization, gpus_per_node or gpu.max_gpus_per_node, min_sequences,
        runtime_overhead_bytes,
    )  # fmt: skip
    if min(inputs.max_model_len, inputs.gpus_per_node, min_sequences) < 1:
        raise ValueError("max_model_len, gpus_per_node and min_sequences must be positive")
    return inputs


class Settings(TypedDict, total=False):
    """``plan_variant``'s keyword arguments but the tensor-parallel size."""

    dtype: str
    kv_cache_dtype: str
    max_model_len: int | None
    gpu_memory_utilization: float
    gpus_per_node: int | None
    min_sequences: int
    runtime_overhead_bytes: int


def feasible_sizes(
    model: ModelArch, gpu: GpuSpec, **settings: Unpack[Settings]
) -> tuple[VariantPlan, ...]:
    """A feasible plan for every tensor-parallel size ``model`` fits ``gpu`` at, smallest
    first (each with its KV capacity); ``settings`` are ``plan_variant``'s, but for the
    tensor-parallel size. Empty when it fits at none."""
    plans = (plan_variant(model, gpu, **settings, tensor_parallel_size=tp) for tp in TP_SIZES)
    return tuple(plan for plan in plans if plan.feasible)


def _plan_explicit(inputs: _Inputs, tp: int) -> VariantPlan:
    if tp not in TP_SIZES:
        return _infeasible(inputs, f"tensorParallelSize {tp} is not one of 1, 2, 4, 8")
    if tp > inputs.gpus_per_node:
        return _infeasible(
            inputs,
            f"tensorParallelSize {tp} exceeds the {inputs.gpus_per_node} {inputs.gpu.name} GPUs "
            "per node; pipeline parallelism across nodes is not supported",
        )
    problem = head_split_problem(inputs.model, tp)
    return _infeasible(inputs, problem) if problem else _evaluate(inputs, tp)


def _plan_auto(inputs: _Inputs) -> VariantPlan:
    sizes = [tp for tp in TP_SIZES if tp <= inputs.gpus_per_node]
    splittable = [tp for tp in sizes if not head_split_problem(inputs.model, tp)]
    if not splittable:
        return _infeasible(inputs, head_split_problem(inputs.model, sizes[-1]))
    plans = (_evaluate(inputs, tp) for tp in splittable)
    last = None
    for plan in plans:
        if plan.feasible:
            return plan
        last = plan
    assert last is not None
    return last


def _evaluate(inputs: _Inputs, tp: int) -> VariantPlan:
    total = weights_bytes(inputs.model, inputs.dtype)
    per_gpu = math.ceil(total / tp)
    kv_free = inputs.usable - per_gpu
    if kv_free <= 0:
        return _infeasible(inputs, _weights_reason(inputs, tp, total), tp=tp)
    block = KV_BLOCK_TOKENS * kv_bytes_per_token_per_gpu(inputs.model, tp, inputs.kv_cache_dtype)
    tokens = kv_free // block * KV_BLOCK_TOKENS
    sequences = tokens // inputs.max_model_len
    if sequences < inputs.min_sequences:
        return _infeasible(inputs, _kv_reason(inputs, tp, kv_free, tokens), tp=tp)
    return dataclasses.replace(
        _infeasible(inputs, "", tp=tp),
        feasible=True,
        tensor_parallel_size=tp,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=sequences,
    )


def _weights_reason(inputs: _Inputs, tp: int, total: int) -> str:
    gpu = inputs.gpu
    reason = (
        f"needs {_gb(total)} of {inputs.dtype} weights; {tp} x {gpu.name} offer "
        f"{_gb(inputs.usable * tp)} usable ({inputs.gpu_memory_utilization:.2f} x "
        f"{_gb(gpu.memory_mib * MIB)} - {_gb(inputs.runtime_overhead_bytes)} runtime overhead "
        "per GPU)"
    )
    if tp >= inputs.gpus_per_node:
        return reason + "; pipeline parallelism across nodes is not supported"
    return reason + "; a larger tensorParallelSize may fit"


def _kv_reason(inputs: _Inputs, tp: int, kv_free: int, tokens: int) -> str:
    wanted = inputs.min_sequences
    sequences = "1 sequence" if wanted == 1 else f"{wanted} sequences"
    return (
        f"at tensorParallelSize {tp} the weights leave {_gb(kv_free)} of KV cache per "
        f"{inputs.gpu.name}, {tokens:,} tokens; {sequences} of maxModelLen "
        f"{inputs.max_model_len:,} {'needs' if wanted == 1 else 'need'} "
        f"{wanted * inputs.max_model_len:,} "
        "(lower maxModelLen, use an fp8 KV cache or more GPUs)"
    )


def _infeasible(inputs: _Inputs, reason: str, *, tp: int | None = None) -> VariantPlan:
    total = weights_bytes(inputs.model, inputs.dtype)
    return VariantPlan(
        model=inputs.model.name,
        gpu=inputs.gpu.name,
        dtype=inputs.dtype,
        feasible=False,
        tensor_parallel_size=None,
        max_model_len=inputs.max_model_len,
        weights_bytes=total,
        weights_per_gpu_bytes=math.ceil(total / (tp or 1)),
        usable_bytes_per_gpu=inputs.usable,
        kv_bytes_per_token=kv_bytes_per_token(inputs.model, inputs.kv_cache_dtype),
        kv_cache_tokens=0,
        max_concurrent_sequences=0,
        reason=reason,
    )


def _gb(n: int | float) -> str:
    """Decimal gigabytes, as GPU and model sizes are usually quoted."""
    gb = n / 1e9
    return f"{gb:.0f} GB" if gb >= 100 else f"{gb:.1f} GB"
