"""vLLM's per-step token budget (``--max-num-batched-tokens``) for a pool's workload class.

Pure. vLLM V1 always chunks prefills: each engine step schedules the running decodes
first, then prefill tokens up to ``max_num_batched_tokens``. vLLM's "Optimization and
Tuning" guide (docs/configuration/optimization.md, "Performance Tuning with Chunked
Prefill"): smaller budgets (e.g. 2048) give better inter-token latency, as fewer
prefill tokens slow each step's decodes; budgets above 8192 are recommended for
throughput, especially for smaller models on large GPUs. The OpenAI server's own default
(vllm/engine/arg_utils.py, ``EngineArgs._set_default_args_v1``) is 8192 on GPUs with at
least 70 GiB that are not A100s and 2048 elsewhere, where larger budgets measured lower
throughput — so ``batch`` raises the budget only where vLLM itself chose the larger one.
"""

from __future__ import annotations

from gpufleet.api.common import WorkloadClass
from gpufleet.hardware import catalog

INTERACTIVE_BUDGET = 2048
BATCH_BUDGET = 16384
_LARGE_DEFAULT = 8192


def vllm_large_gpu(gpu: catalog.GpuSpec) -> bool:
    """Whether vLLM V1 gives ``gpu`` its larger batching defaults: at least 70 GiB and
    not an A100 (vllm/engine/arg_utils.py; larger budgets lowered A100 throughput in
    vLLM's measurements)."""
    return gpu.memory_mib >= 70 * 1024 and not gpu.name.startswith("A100")


def vllm_default_budget(gpu: catalog.GpuSpec) -> int:
    """vLLM V1's default ``max_num_batched_tokens`` for its OpenAI server on ``gpu``:
    8192 on a ``vllm_large_gpu``, 2048 otherwise (EngineArgs._set_default_args_v1)."""
    return _LARGE_DEFAULT if vllm_large_gpu(gpu) else INTERACTIVE_BUDGET


def batched_tokens(workload: WorkloadClass, gpu: catalog.GpuSpec) -> int | None:
    """The budget to pass to vLLM; None leaves vLLM's default (``mixed``, and ``batch``
    on GPUs where vLLM keeps the small budget)."""
    if workload == "interactive":
        return INTERACTIVE_BUDGET
    if workload == "batch" and vllm_default_budget(gpu) == _LARGE_DEFAULT:
        return BATCH_BUDGET
    return None
