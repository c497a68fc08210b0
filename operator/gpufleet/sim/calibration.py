"""Published vLLM measurements the performance model is calibrated against (pure).

Each point names its source, the vLLM setup it was measured in, the figure and the
tolerance the unit tests hold the model to. ``predict`` reruns the measurement's
workload against a simulated replica in virtual time (``gpufleet.sim.offline``), so a
point checks the whole step loop, not only the cost formula. ``median_error`` is the
figure docs/simulator.md reports.

Public, fixed-workload vLLM measurements per GPU generation are scarce: the points below
are the ones found with the workload stated precisely enough to replay. Generations
without a point (H100, H200, B200) follow from their data-sheet bandwidth and FLOPS with
the same efficiencies; the ordering test guards their relative speed.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Literal

from gpufleet.planning import ModelArch
from gpufleet.sim import offline, perfmodel, replica

Metric = Literal["output_throughput", "tpot", "prefill_throughput"]

# johnmusgrave.com/p/vllm-throughput-latency-sweep-on — "vLLM throughput-latency sweep on
# NVIDIA A100": Llama-3.1-8B-Instruct BF16, 1x A100 40GB, vLLM 0.23.0 defaults,
# `vllm bench serve --dataset-name random --random-input-len 1024 --random-output-len 128
# --ignore-eos --max-concurrency C --num-prompts 20C --request-rate inf`. Reported: at C=1
# about 75 output tokens/s; C=8 gives a 6.6x throughput gain (about 495 tokens/s).
_MUSGRAVE = "johnmusgrave.com/p/vllm-throughput-latency-sweep-on (vLLM 0.23.0)"
# ai.wmx.dev/benchmarks — "serving/raw-vllm" concurrency sweep: Qwen2.5-0.5B-Instruct
# BF16 on 1x L4, vLLM 0.23.0 (V1), --gpu-memory-utilization 0.6 --max-model-len 8192,
# 256-token input / 128-token output, --ignore-eos, closed loop at fixed concurrency.
# Reported: C=1 ITL p50 5.1 ms, 168 output tokens/s; C=32 ITL p50 7.1 ms, 3773 tokens/s.
# (Its C=1 throughput includes the client's gap between requests, which no engine model
# sees; hence the wider tolerance there.)
_WMX = "ai.wmx.dev/benchmarks (vLLM 0.23.0)"
# evokernel-specs.pages.dev/en/cases/case-llama33-a100x8-vllm-001 — Llama 3.3 70B BF16
# (the architecture of 3.1 70B), 8x A100 SXM4 80GB, TP 8, vLLM 0.6, prefill 1024 /
# decode 512, batch 16: TBT p50 32 ms. The page says it was synthesized from public
# vLLM benchmark threads, and vLLM 0.6 predates V1 and its lower CPU overhead, so the
# point gets a wide tolerance. (Its prefill figure, 18,200 tokens/s, would need more than
# the A100's peak FLOPS and is not used.)
_EVOKERNEL = "evokernel-specs.pages.dev case-llama33-a100x8-vllm-001 (vLLM 0.6)"

# Qwen2.5-0.5B is outside the planner's catalog; its shape for the L4 points, from
# https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json.
QWEN25_05B = ModelArch(
    name="qwen2.5-0.5b",
    hf_id="Qwen/Qwen2.5-0.5B-Instruct",
    parameters=494_032_768,
    num_layers=24,
    hidden_size=896,
    num_attention_heads=14,
    num_kv_heads=2,
    head_dim=64,
    max_context=32768,
    vocab_size=151936,
    tie_word_embeddings=True,
    intermediate_size=4864,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One published figure and the workload that produced it."""

    name: str
    model: str
    gpu: str
    tensor_parallel_size: int
    metric: Metric
    concurrency: int
    input_len: int
    output_len: int
    published: float
    tolerance: float
    source: str
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 8192

    @property
    def arch(self) -> ModelArch | None:
        return QWEN25_05B if self.model == QWEN25_05B.name else None


POINTS: tuple[Point, ...] = (
    Point("a100-40-8b-c1", "llama-3.1-8b", "A100-40GB", 1, "output_throughput",
          1, 1024, 128, 75.0, 0.15, _MUSGRAVE),
    Point("a100-40-8b-c8", "llama-3.1-8b", "A100-40GB", 1, "output_throughput",
          8, 1024, 128, 495.0, 0.25, _MUSGRAVE),
    Point("l4-0.5b-c1-itl", "qwen2.5-0.5b", "L4", 1, "tpot",
          1, 256, 128, 0.0051, 0.15, _WMX, 0.6),
    Point("l4-0.5b-c1", "qwen2.5-0.5b", "L4", 1, "output_throughput",
          1, 256, 128, 168.0, 0.30, _WMX, 0.6),
    Point("l4-0.5b-c32-itl", "qwen2.5-0.5b", "L4", 1, "tpot",
          32, 256, 128, 0.0071, 0.15, _WMX, 0.6),
    Point("l4-0.5b-c32", "qwen2.5-0.5b", "L4", 1, "output_throughput",
          32, 256, 128, 3773.0, 0.15, _WMX, 0.6),
    Point("a100x8-70b-tbt", "llama-3.1-70b", "A100-80GB", 8, "tpot",
          16, 1024, 512, 0.032, 0.50, _EVOKERNEL),
)  # fmt: skip


def predict(point: Point, *, efficiency: perfmodel.Efficiency | None = None) -> float:
    """The model's figure for ``point``'s workload (tokens/s, or seconds for TPOT)."""
    spec = replica.ReplicaSpec(
        model=point.model,
        gpu=point.gpu,
        tensor_parallel_size=point.tensor_parallel_size,
        max_model_len=point.max_model_len,
        gpu_memory_utilization=point.gpu_memory_utilization,
    )
    built = replica.build(spec, arch=point.arch, efficiency=efficiency)
    if point.metric == "prefill_throughput":
        return point.input_len / built.perf.prefill_seconds(point.input_len)
    result = offline.closed_loop(
        built.engine(),
        concurrency=point.concurrency,
        input_len=point.input_len,
        output_len=point.output_len,
        requests=point.concurrency * 20,
    )
    return result.output_throughput if point.metric == "output_throughput" else result.mean_tpot_s


def relative_error(point: Point, *, efficiency: perfmodel.Efficiency | None = None) -> float:
    """|predicted - published| / published."""
    return abs(predict(point, efficiency=efficiency) - point.published) / point.published


def median_error(*, efficiency: perfmodel.Efficiency | None = None) -> float:
    """Median relative error over all points."""
    return statistics.median(relative_error(p, efficiency=efficiency) for p in POINTS)
