"""Published vLLM measurements the performance model is calibrated against (pure).

Each point names its source, the vLLM setup it was measured in, the figure and the
tolerance the unit tests hold the model to. ``predict`` reruns the measurement's
workload against a simulated replica in virtual time (``gpufleet.sim.offline``), so a
point checks the whole step loop, not only the cost formula. ``median_error`` is the
figure docs/simulator.md reports.

``RATIOS`` are cross-generation points: one setup (model, vLLM version, workload) run on
two generations, published as both figures. The simulator must reproduce the ratio
between them within ``tolerance`` (15 %); these fix the per-generation efficiencies in
``gpufleet.hardware.catalog``. ``table`` gives the rows ``gpufleet sim calibrate`` prints.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Literal

from gpufleet.hardware import catalog
from gpufleet.planning import ModelArch, perfmodel
from gpufleet.sim import offline, replica

Metric = Literal["output_throughput", "tpot", "prefill_throughput"]
RatioMetric = Literal["ttft", "tpot", "total_throughput"]

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


# LambdaLabsML/vllm-benchmark, results/prompt_10/1x{A100,H100}-80GB-SXM/
# Meta-Llama-3-8B-Instruct_tp1_len2048.json (2024-09-07/08, vLLM 0.6 with 10-step
# scheduling, benchmark_serving.py, the same 10 ShareGPT prompts sent at once): the
# prompt and output lengths below are the files' ``input_lens`` and the A100 run's
# ``output_lens``. Mean TTFT 126.87 ms (A100-80GB SXM) vs 62.43 ms (H100 SXM); mean ITL
# (per 10-token chunk) 114.99 vs 72.40 ms.
_LAMBDA_INPUTS = (13, 25, 27, 10, 329, 29, 399, 328, 4, 205)
_LAMBDA_OUTPUTS = (120, 507, 233, 194, 101, 741, 9, 3, 6, 31)
_LAMBDA = "LambdaLabsML/vllm-benchmark results/prompt_10 (Llama-3-8B BF16, vLLM 0.6)"
# research.aimultiple.com/multi-gpu (2025-09): vLLM, Llama-3.1-8B-Instruct, one GPU,
# saturated offline load (input + output tokens/s): B200 31,343 tok/s, "77 % faster than
# the H100". The page does not give its lengths; replayed as 256 clients of 1000/1000.
_AIMULTIPLE = "research.aimultiple.com/multi-gpu (Llama-3.1-8B, vLLM, 1 GPU)"
# redhat.com/blog/efficient-and-reproducible-llm-inference-red-hat-mlperf-inference-v51-results
# (2025-09): Red Hat's MLPerf Inference v5.1 submissions, Llama-3.1-8B-Instruct with FP8
# weights, vLLM 0.10.0 on RHEL 9.6, one GPU each: Offline 5777 tokens/s on an H100,
# 1642 on an L40S (3.52x; Server 5103 vs 1207). Offline hands MLPerf's whole CNN/
# DailyMail summarisation set over at once, and MLPerf's reference harness
# (mlcommons/inference language/llama3.1-8b) drives vLLM's offline LLM class, so it is
# replayed with that class's batch limits; the page gives no lengths, so news articles
# and short summaries are replayed as 1024/128 (768/128 or 1500/150 move the simulated
# ratio by under 10 %).
_REDHAT = "redhat.com MLPerf Inference v5.1 (Llama-3.1-8B FP8, vLLM 0.10.0, 1 GPU, Offline)"


@dataclasses.dataclass(frozen=True, slots=True)
class Ratio:
    """How much faster ``faster`` ran one workload than ``slower``, as published.

    ``inputs``/``outputs`` describe a burst (all requests at once); with ``concurrency``
    set, a closed loop of fixed ``inputs[0]``/``outputs[0]`` lengths instead. ``dtype`` is
    the weights' type; ``offline`` runs both with vLLM's offline ``LLM`` class limits
    (``replica.offline_engine_limits``) instead of its OpenAI server's.
    """

    name: str
    model: str
    faster: str
    slower: str
    metric: RatioMetric
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    published: float
    source: str
    concurrency: int = 0
    tolerance: float = 0.15
    dtype: str = "bf16"
    offline: bool = False


RATIOS: tuple[Ratio, ...] = (
    Ratio("h100/a100-80-8b-ttft", "llama-3.1-8b", "H100-80GB", "A100-80GB", "ttft",
          _LAMBDA_INPUTS, _LAMBDA_OUTPUTS, 126.87 / 62.43, _LAMBDA),
    Ratio("h100/a100-80-8b-itl", "llama-3.1-8b", "H100-80GB", "A100-80GB", "tpot",
          _LAMBDA_INPUTS, _LAMBDA_OUTPUTS, 114.99 / 72.40, _LAMBDA),
    Ratio("b200/h100-8b-throughput", "llama-3.1-8b", "B200", "H100-80GB", "total_throughput",
          (1000,), (1000,), 1.77, _AIMULTIPLE, concurrency=256),
    Ratio("h100/l40s-8b-fp8-offline", "llama-3.1-8b", "H100-80GB", "L40S", "total_throughput",
          (1024,), (128,), 5777 / 1642, _REDHAT, concurrency=1024, dtype="fp8", offline=True),
)  # fmt: skip


def _spec(ratio: Ratio, gpu: str) -> replica.ReplicaSpec:
    spec = replica.ReplicaSpec(model=ratio.model, gpu=gpu, tensor_parallel_size=1,
                               max_model_len=4096, dtype=ratio.dtype)  # fmt: skip
    if not ratio.offline:
        return spec
    seqs, tokens = replica.offline_engine_limits(catalog.get(gpu))
    return dataclasses.replace(spec, max_num_seqs=seqs, max_num_batched_tokens=tokens)


def _run(ratio: Ratio, gpu: str) -> offline.LoadResult:
    engine = replica.build(_spec(ratio, gpu)).engine()
    if ratio.concurrency:
        return offline.closed_loop(
            engine, concurrency=ratio.concurrency, input_len=ratio.inputs[0],
            output_len=ratio.outputs[0], requests=2 * ratio.concurrency,
        )  # fmt: skip
    return offline.burst(engine, inputs=ratio.inputs, outputs=ratio.outputs)


def _figure(result: offline.LoadResult, metric: RatioMetric, input_len: int) -> float:
    if metric == "ttft":
        return 1 / result.mean_ttft_s
    if metric == "tpot":
        return 1 / result.mean_tpot_s
    return (result.output_tokens + result.requests * input_len) / result.duration_s


def simulate(ratio: Ratio) -> float:
    """The simulator's speed ratio faster / slower for ``ratio``'s workload."""
    faster, slower = (_figure(_run(ratio, g), ratio.metric, ratio.inputs[0])
                      for g in (ratio.faster, ratio.slower))  # fmt: skip
    return faster / slower


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of ``gpufleet sim calibrate``."""

    point: str
    published: float
    simulated: float
    tolerance: float
    source: str

    @property
    def error(self) -> float:
        return (self.simulated - self.published) / self.published


def table() -> list[Row]:
    """Every absolute point, then every cross-generation ratio, with the model's figure."""
    rows = [Row(p.name, p.published, predict(p), p.tolerance, p.source) for p in POINTS]
    rows += [Row(r.name, r.published, simulate(r), r.tolerance, r.source) for r in RATIOS]
    return rows
