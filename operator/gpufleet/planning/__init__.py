"""Model catalog and the tensor-parallel / memory / KV-cache planner (pure functions).

The entry point shared by the operator and the simulator::

    plan_variant(
        model: ModelArch, gpu: GpuSpec, *,
        dtype: str = "bf16",                 # bf16 fp16 fp8 int8 int4 awq gptq
        kv_cache_dtype: str = "auto",        # auto (16 bit) bf16 fp16 fp8
        tensor_parallel_size: int | None = None,   # None = smallest workable of 1, 2, 4, 8
        max_model_len: int | None = None,          # None = the model's context
        gpu_memory_utilization: float = 0.9,
        gpus_per_node: int | None = None,          # None = gpu.max_gpus_per_node
        min_sequences: int = 1,                    # full-length sequences the KV cache must hold
        runtime_overhead_bytes: int = 2 GiB,
    ) -> VariantPlan   # feasible, tensor_parallel_size, weights_bytes, weights_per_gpu_bytes,
                       # usable_bytes_per_gpu, kv_bytes_per_token, kv_cache_tokens,
                       # max_concurrent_sequences, max_model_len, reason

``models.get(name)`` finds a catalog model (``UnknownModel`` lists the known names).
"""

from gpufleet.planning.models import MODELS, ModelArch, UnknownModel
from gpufleet.planning.models import get as get_model
from gpufleet.planning.planner import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_MIN_SEQUENCES,
    RUNTIME_OVERHEAD_BYTES,
    TP_SIZES,
    VariantPlan,
    kv_bytes_per_token,
    kv_bytes_per_token_per_gpu,
    plan_variant,
    weights_bytes,
)

__all__ = [
    "DEFAULT_GPU_MEMORY_UTILIZATION",
    "DEFAULT_MIN_SEQUENCES",
    "MODELS",
    "RUNTIME_OVERHEAD_BYTES",
    "TP_SIZES",
    "ModelArch",
    "UnknownModel",
    "VariantPlan",
    "get_model",
    "kv_bytes_per_token",
    "kv_bytes_per_token_per_gpu",
    "plan_variant",
    "weights_bytes",
]
