"""One simulated replica from its deployment settings: planner capacity + performance model.

Pure glue between ``gpufleet.planning`` (does the model fit, how many KV tokens are left)
and ``gpufleet.planning.perfmodel`` / ``engine``. Raises ``ReplicaError`` with the
planner's reason when the settings cannot run, so the CLI can say why. ``load_seconds``
is how long the replica takes to start (simulated time): vLLM's API listens only once
the engine has loaded the weights and initialised.
"""

from __future__ import annotations

import dataclasses

from gpufleet.hardware import catalog
from gpufleet.planning import ModelArch, VariantPlan, batching, get_model, perfmodel, plan_variant
from gpufleet.sim.engine import Engine, EngineConfig

# vLLM's start-up besides reading weights, nearly independent of model size: imports,
# CUDA/NCCL init, the profiling run, KV-cache allocation, torch.compile (loaded from its
# cache) and CUDA-graph capture. vLLM's logs: "init engine (profile, create kv cache,
# warmup model) took 14.18 seconds" for Llama-3-8B without compilation (vllm-project/vllm
# PR #11005), 34.11 s with a warm torch.compile cache and a first response after 59 s
# (issue #20264). 30 s sits between; a cold compile cache adds 20-40 s more.
ENGINE_STARTUP_SECONDS = 30.0


class ReplicaError(ValueError):
    """Settings the planner rejects (model does not fit, unknown GPU or model, bad TP)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """What ``vllm serve`` would be started with, on which GPU generation."""

    model: str
    gpu: str
    tensor_parallel_size: int | None = None
    dtype: str = "bf16"
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Replica:
    """A planned replica: its architecture, plan and performance model."""

    spec: ReplicaSpec
    arch: ModelArch
    plan: VariantPlan
    perf: perfmodel.PerfModel

    @property
    def tensor_parallel_size(self) -> int:
        return self.perf.tensor_parallel_size

    @property
    def load_seconds(self) -> float:
        """Simulated seconds from process start until the API serves (``load_seconds``)."""
        return load_seconds(self.plan, catalog.get(self.spec.gpu))

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            num_blocks=self.plan.kv_cache_tokens // 16,
            max_model_len=self.plan.max_model_len,
            max_num_seqs=self.spec.max_num_seqs,
            max_num_batched_tokens=self.spec.max_num_batched_tokens
            or batching.vllm_default_budget(catalog.get(self.spec.gpu)),
            enable_prefix_caching=self.spec.enable_prefix_caching,
        )

    def engine(self) -> Engine:
        return Engine(self.engine_config(), self.perf)


def offline_engine_limits(gpu: catalog.GpuSpec) -> tuple[int, int]:
    """vLLM V1's defaults for its offline ``LLM`` class on ``gpu``: (max_num_seqs,
    max_num_batched_tokens).

    vllm/engine/arg_utils.py (EngineArgs.get_batch_defaults): 1024 sequences and 16384
    tokens on a ``batching.vllm_large_gpu``, 256 and 8192 otherwise. Offline benchmarks
    (MLPerf's reference harness) run on this class, not the server.
    """
    return (1024, 16384) if batching.vllm_large_gpu(gpu) else (256, 8192)


def load_seconds(
    plan: VariantPlan,
    gpu: catalog.GpuSpec,
    *,
    startup_seconds: float = ENGINE_STARTUP_SECONDS,
) -> float:
    """Simulated seconds a replica of ``plan`` on ``gpu`` takes to become ready.

    The fixed engine start-up plus one GPU's shard of the weights
    (``plan.weights_per_gpu_bytes``: the whole weights / TP, since the ranks load their
    shards in parallel) at the generation's ``weight_load_gbps``.
    """
    return startup_seconds + plan.weights_per_gpu_bytes / (gpu.weight_load_gbps * 1e9)


def build(
    spec: ReplicaSpec,
    *,
    arch: ModelArch | None = None,
    efficiency: perfmodel.Efficiency | None = None,
) -> Replica:
    """Plan ``spec`` and build its performance model; ``ReplicaError`` if it cannot run.

    ``arch`` describes a model outside the planner's catalog (``spec.model`` is then only
    its served name).
    """
    try:
        arch = arch or get_model(spec.model)
        gpu = catalog.get(spec.gpu)
        plan = plan_variant(
            arch,
            gpu,
            dtype=spec.dtype,
            kv_cache_dtype=spec.kv_cache_dtype,
            tensor_parallel_size=spec.tensor_parallel_size,
            max_model_len=spec.max_model_len,
            gpu_memory_utilization=spec.gpu_memory_utilization,
        )
    except (KeyError, ValueError) as exc:
        raise ReplicaError(str(exc)) from exc
    if not plan.feasible:
        raise ReplicaError(f"{spec.model} on {spec.gpu}: {plan.reason}")
    perf = perfmodel.build(
        arch, gpu, plan, kv_cache_dtype=spec.kv_cache_dtype, efficiency=efficiency
    )
    return Replica(spec, arch, plan, perf)
