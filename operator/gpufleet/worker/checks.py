"""Found versus asked: may this container start vLLM on these GPUs? (pure)

``visible`` applies ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs) to what NVML lists, since
NVML ignores it and vLLM does not. ``check`` compares the visible GPUs with the pod's
``Claim``: every GPU must be the claimed generation (product *and* memory, as the
operator's node affinity selects it) and there must be exactly as many as vLLM will use.
Over PCIe, tensor parallelism all-reduces through host memory at a fraction of NVLink's
bandwidth: allowed, but warned about. ``nccl_env`` is the NCCL environment for the GPU
count, without overriding what the pod sets itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from gpufleet.hardware import nccl
from gpufleet.worker.claim import Claim
from gpufleet.worker.inventory import Gpu

# NCCL_P2P_DISABLE=0 only from four GPUs on, as the operator's pod spec sets it.
P2P_FROM_GPUS = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Findings:
    """Why the container must not start (``mismatches``), and what merely deserves a word."""

    mismatches: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.mismatches


def visible(gpus: Sequence[Gpu], cuda_visible_devices: str | None) -> list[Gpu]:
    """The GPUs CUDA will expose: all when unset, none when empty, else those listed."""
    if cuda_visible_devices is None:
        return list(gpus)
    wanted = [d.strip() for d in cuda_visible_devices.split(",") if d.strip()]
    return [g for g in gpus if str(g.index) in wanted or (g.uuid and g.uuid in wanted)]


def _generation_mismatches(claim: Claim, gpus: Sequence[Gpu]) -> list[str]:
    return [
        f"{gpu} is not the {claim.describe()} this pod was scheduled for"
        for gpu in gpus
        if not claim.matches(gpu.product, gpu.memory_mib)
    ]


def _count_mismatch(claim: Claim, gpus: Sequence[Gpu]) -> list[str]:
    if len(gpus) == claim.gpu_count:
        return []
    asked = f"tensor-parallel-size {claim.tensor_parallel}"
    if claim.pipeline_parallel > 1:
        asked += f" x pipeline-parallel-size {claim.pipeline_parallel}"
    found = ", ".join(str(g) for g in gpus) or "none"
    return [f"{len(gpus)} GPU(s) visible ({found}) but vLLM asks for {asked} = {claim.gpu_count}"]


def _pcie_warning(claim: Claim, gpus: Sequence[Gpu]) -> list[str]:
    without = [g.index for g in gpus if g.nvlink_links == 0]
    if claim.tensor_parallel < 2 or not without:
        return []
    listed = ", ".join(str(i) for i in without)
    return [
        f"tensor-parallel-size {claim.tensor_parallel} over PCIe: GPU(s) {listed} have no "
        "active NVLink, so every all-reduce crosses the host (expect slower decoding)"
    ]


def check(claim: Claim, gpus: Sequence[Gpu]) -> Findings:
    """Every mismatch between ``claim`` and the visible ``gpus``, and the warnings."""
    mismatches = _generation_mismatches(claim, gpus) + _count_mismatch(claim, gpus)
    return Findings(mismatches=tuple(mismatches), warnings=tuple(_pcie_warning(claim, gpus)))


def nccl_env(gpu_count: int, current: Mapping[str, str]) -> dict[str, str]:
    """The NCCL variables to add for ``gpu_count`` GPUs; a variable already set is kept."""
    if gpu_count < 2:
        return {}
    seeds = dict(nccl.ENV)
    if gpu_count < P2P_FROM_GPUS:
        seeds.pop("NCCL_P2P_DISABLE")
    return {k: v for k, v in seeds.items() if k not in current}
