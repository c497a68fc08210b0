"""The cost of one continuous-batching engine step on one GPU generation (pure).

A step runs one forward pass over every scheduled token: prefill chunks and one decode
token per running sequence. Its time is a roofline over the step's work plus fixed costs::

    compute = (linear FLOPs of all tokens + attention FLOPs over their context) / GPU
              / (peak FLOPS x compute efficiency)
    memory  = (weights per GPU + KV bytes read and written) / (bandwidth x bandwidth eff.)
    step    = max(compute, memory) + per-step overhead + per-sequence overhead x batch
              + TP all-reduce time

The maximum rather than the sum is deliberate: a step reads the weights once for all of
its tokens, which is why vLLM's chunked prefill can piggyback prefill on memory-bound
decode steps almost for free. Decode therefore slows with batch size and context (more
KV read, and past the ridge point more FLOPs) and prefill with prompt length.

The efficiency factors are per GPU generation (``GpuSpec.decode_efficiency`` and
``prefill_efficiency``: newer generations reach less of their data-sheet peaks in vLLM),
calibrated against published vLLM measurements; see ``gpufleet.sim.calibration`` for the
points, their sources and the model's error. One model for the whole fleet: the
simulator's engine steps by it and the router's learned curves start from it
(``gpufleet.routing.performance``), so it lives here, below both.
"""

from __future__ import annotations

import dataclasses

from gpufleet.hardware.catalog import GpuSpec
from gpufleet.planning.models import ModelArch
from gpufleet.planning.planner import VariantPlan, kv_bytes_per_token_per_gpu

# Experts active per token in the catalog's mixture-of-experts models (Mixtral routes
# each token to 2 of 8: https://huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json
# "num_experts_per_tok": 2).
MOE_ACTIVE_EXPERTS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Efficiency:
    """How much of the data-sheet peak a vLLM step achieves, and its fixed costs.

    ``for_gpu`` takes the generation's measured shares from the catalog; the defaults
    are the A100 fit: decode on an A100-40GB reaches ~77 % of the bandwidth floor in
    vLLM 0.23 with CUDA graphs (johnmusgrave.com/p/vllm-throughput-latency-sweep-on),
    prefill GEMMs ~65 % of dense peak. The per-sequence CPU cost (60 us) was fitted on
    Qwen2.5-0.5B on an L4 and re-checked on an 8B-class point: Llama-3-8B, 10 requests
    at once, gives 11.1 ms per token on an A100-80GB and 7.2 ms on an H100 against
    11.5 and 7.24 ms measured (LambdaLabsML/vllm-benchmark), so it stands.
    """

    bandwidth: float = 0.80
    compute: float = 0.65
    step_overhead_s: float = 0.0008
    # vLLM's CPU work per scheduled sequence and step (scheduling, sampling,
    # detokenizing); it is what makes small models slow down with batch size even when
    # the GPU is far from its roofline.
    sequence_overhead_s: float = 60e-6
    allreduce_latency_s: float = 12e-6

    @classmethod
    def for_gpu(cls, gpu: GpuSpec) -> Efficiency:
        """The generation's measured shares of its peaks, with the default overheads."""
        return cls(bandwidth=gpu.decode_efficiency, compute=gpu.prefill_efficiency)

    def __post_init__(self) -> None:
        if not (0 < self.bandwidth <= 1 and 0 < self.compute <= 1):
            raise ValueError("efficiencies must be in (0, 1]")
        overheads = (self.step_overhead_s, self.sequence_overhead_s, self.allreduce_latency_s)
        if min(overheads) < 0:
            raise ValueError("overheads must not be negative")


@dataclasses.dataclass(frozen=True, slots=True)
class StepWork:
    """The work of one engine step, summed over its sequences.

    ``prefill_context`` is the sum, over prefill tokens, of the positions each attends
    to; ``decode_context`` the sum of the context lengths of the decoding sequences;
    ``sequences`` how many sequences the step touches (0: count the decode tokens).
    """

    prefill_tokens: int = 0
    prefill_context: int = 0
    decode_tokens: int = 0
    decode_context: int = 0
    sequences: int = 0

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class PerfModel:
    """Per-GPU constants of one model replica (model x generation x dtype x TP)."""

    gpu: str
    tensor_parallel_size: int
    weights_per_gpu_bytes: int
    kv_bytes_per_token_per_gpu: int
    linear_flops_per_token_per_gpu: float
    attention_flops_per_position_per_gpu: float
    allreduce_bytes_per_token: float
    num_layers: int
    peak_flops: float
    bandwidth_bytes_s: float
    nvlink_bytes_s: float
    efficiency: Efficiency

    def step_seconds(self, work: StepWork) -> float:
        """Seconds one step takes; 0 for a step with no tokens."""
        if work.tokens == 0:
            return 0.0
        return max(self.compute_seconds(work), self.memory_seconds(work)) + self._fixed(work)

    def compute_seconds(self, work: StepWork) -> float:
        """Time of the step's FLOPs at the calibrated share of peak."""
        flops = work.tokens * self.linear_flops_per_token_per_gpu
        flops += (work.prefill_context + work.decode_context) * (
            self.attention_flops_per_position_per_gpu
        )
        return flops / (self.peak_flops * self.efficiency.compute)

    def memory_seconds(self, work: StepWork) -> float:
        """Time to stream weights, read the context's KV and write the new tokens' KV."""
        kv_tokens = work.decode_context + work.tokens
        data = self.weights_per_gpu_bytes + kv_tokens * self.kv_bytes_per_token_per_gpu
        return data / (self.bandwidth_bytes_s * self.efficiency.bandwidth)

    def _fixed(self, work: StepWork) -> float:
        seconds = self.efficiency.step_overhead_s
        seconds += self.efficiency.sequence_overhead_s * (work.sequences or work.decode_tokens)
        if self.tensor_parallel_size > 1:
            # Two all-reduces per layer (after attention and after the MLP).
            per_layer = 2 * self.efficiency.allreduce_latency_s
            per_layer += 2 * work.tokens * self.allreduce_bytes_per_token / self.nvlink_bytes_s
            seconds += self.num_layers * per_layer
        return seconds

    def decode_seconds(self, *, batch: int, context: int) -> float:
        """One pure-decode step of ``batch`` sequences of ``context`` tokens each."""
        return self.step_seconds(StepWork(decode_tokens=batch, decode_context=batch * context))

    def prefill_seconds(self, prompt_tokens: int) -> float:
        """One prefill of ``prompt_tokens`` in a single step (no chunking)."""
        context = prompt_tokens * (prompt_tokens + 1) // 2
        work = StepWork(prefill_tokens=prompt_tokens, prefill_context=context, sequences=1)
        return self.step_seconds(work)


def active_parameters(model: ModelArch) -> int:
    """Parameters a token passes through: all of them, less the idle experts of an MoE."""
    if model.num_experts <= 1 or model.intermediate_size <= 0:
        return model.parameters
    expert = 3 * model.hidden_size * model.intermediate_size * model.num_layers
    idle = max(0, model.num_experts - MOE_ACTIVE_EXPERTS)
    return max(1, model.parameters - idle * expert)


def compute_flops(gpu: GpuSpec, dtype: str) -> float:
    """Dense peak FLOPS for the weight dtype: fp8 tensor cores where the GPU has them."""
    tflops = gpu.fp8_tflops if dtype == "fp8" and gpu.fp8_tflops > 0 else gpu.bf16_tflops
    return tflops * 1e12


def build(
    model: ModelArch,
    gpu: GpuSpec,
    plan: VariantPlan,
    *,
    kv_cache_dtype: str = "auto",
    efficiency: Efficiency | None = None,
) -> PerfModel:
    """The performance model of a feasible planner ``plan`` of ``model`` on ``gpu``."""
    tp = plan.tensor_parallel_size
    if tp is None:
        raise ValueError(f"plan of {plan.model} on {plan.gpu} is infeasible: {plan.reason}")
    q_dim = model.num_attention_heads * model.head_dim
    return PerfModel(
        gpu=gpu.name,
        tensor_parallel_size=tp,
        weights_per_gpu_bytes=plan.weights_per_gpu_bytes,
        kv_bytes_per_token_per_gpu=kv_bytes_per_token_per_gpu(model, tp, kv_cache_dtype),
        linear_flops_per_token_per_gpu=2 * active_parameters(model) / tp,
        # QK^T and attention x V: 2 matmuls x 2 FLOPs per multiply-add, per position.
        attention_flops_per_position_per_gpu=4 * model.num_layers * q_dim / tp,
        allreduce_bytes_per_token=2 * model.hidden_size * (tp - 1) / tp * 2,
        num_layers=model.num_layers,
        peak_flops=compute_flops(gpu, plan.dtype),
        bandwidth_bytes_s=gpu.bandwidth_gbps * 1e9,
        nvlink_bytes_s=max(gpu.nvlink_gbps, 32.0) * 1e9,
        efficiency=efficiency or Efficiency.for_gpu(gpu),
    )
