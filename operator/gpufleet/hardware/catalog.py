"""The GPU generation catalog: what each canonical generation is and how to spot it.

Pure data and lookups. Each entry holds the memory the GPU reports (MiB, as NVML and GPU
Feature Discovery's ``nvidia.com/gpu.memory`` label show it), memory bandwidth, dense
tensor throughput, interconnect, the share of the data-sheet bandwidth and FLOPS vLLM
reaches on it (measured, with their sources), the default relative throughput weight
used by routing (derived from the measured decode bandwidth), the rate at which vLLM
loads one GPU's shard of the weights (cold starts), and the GPU Feature Discovery
``nvidia.com/gpu.product`` strings that identify it. A node is matched on product
**and** memory, so one generation can never be taken for another that shares a product-
name prefix or a memory size (H100-80GB and A100-80GB report within 0.5 % of each
other). ``gpufleet.hardware.overrides`` builds a catalog with site-specific changes;
every lookup takes the catalog to use, defaulting to ``GPUS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gpufleet import lookup

PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
FAMILY_LABEL = "nvidia.com/gpu.family"
GPU_RESOURCE = "nvidia.com/gpu"

# Drivers and board revisions report slightly different totals for one product (A100
# PCIe 40GB: 40960 or 40536 MiB), so the memory label matches within this fraction.
MEMORY_TOLERANCE = 0.02

# Decode is memory-bandwidth bound, so the default throughput weight is the *measured*
# decode bandwidth (data sheet x ``decode_efficiency``) relative to this reference
# (A100-80GB SXM4: 2039 GB/s at 0.80); routing may override it and learns it by default.
REFERENCE_BANDWIDTH_GBPS = 2039.0
REFERENCE_DECODE_EFFICIENCY = 0.80

# Shares of the data-sheet peaks vLLM reaches (``GpuSpec.decode_efficiency``,
# ``prefill_efficiency``); a generation without a published measurement gets these, the
# A100 fit. The sources of each generation's figures are in ``GpuSpec.perf_source`` and
# the replayed measurements in ``gpufleet.sim.calibration``.
DEFAULT_DECODE_EFFICIENCY = 0.80
DEFAULT_PREFILL_EFFICIENCY = 0.65
UNCALIBRATED = "no published same-setup vLLM measurement found; the A100 fit"

# Weight loading (``GpuSpec.weight_load_gbps``): the GB/s at which vLLM's default
# safetensors loader reads one GPU's shard from node-local storage and copies it to that
# GPU; tensor-parallel ranks load their shards in parallel. The host link is never the
# limit (PCIe Gen4 x16 moves ~25 GB/s, Gen5 ~50 GB/s); the loader is: it reads the
# memory-mapped files tensor by tensor through the page cache into pageable host memory,
# so storage latency and host CPU bound it to a few GB/s at best. Measured points:
# - Run:ai Model Streamer benchmarks (run.ai blog, 2024-10; NVIDIA developer blog): on an
#   AWS g5.12xlarge (A10G, PCIe Gen4, 2nd-gen EPYC) vLLM's safetensors loader took
#   47.99 s for Llama-3-8B (15 GB) from EBS gp3, 0.31 GB/s; the streamer reached the
#   2 GB/s of io2 storage;
# - fastsafetensors (Yoshimura et al., IEEE CLOUD 2025, arXiv 2505.23072): vLLM with the
#   default loader started Llama-2-13B (26 GB) in 16.04 s on 1x A100 (~1.6 GB/s) and in
#   12.39 s on 4x L40S (6.5 GB shards, ~0.5 GB/s per GPU).
# So: the PCIe inference cards (A10G, L4, L40S) sit on small Gen4 hosts with one local
# NVMe drive shared by every GPU, 0.4-0.5 GB/s; A100 HGX hosts (Gen4, several NVMe
# drives) 1.5 GB/s; Hopper HGX hosts (Gen5, 8 NVMe drives on AWS p5/p5e, faster CPUs)
# 2 GB/s; Blackwell HGX hosts 2.5 GB/s. With vLLM's fixed engine start-up
# (``gpufleet.sim.replica``) a 70B model at TP 4 on A100s is ready in about a minute from
# a warm local disk; a download from the Hub or object storage comes on top.
DEFAULT_WEIGHT_LOAD_GBPS = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class GpuSpec:
    """One GPU generation; bandwidth in GB/s, TFLOPS dense (without 2:4 sparsity).

    ``decode_efficiency`` is the share of ``bandwidth_gbps`` a vLLM decode step reaches,
    ``prefill_efficiency`` the share of the dense peak its prompt processing reaches;
    ``perf_source`` names the measurements they were fitted to.
    ``weight_load_gbps`` is how fast one GPU's shard of the weights is loaded at start-up
    (see ``DEFAULT_WEIGHT_LOAD_GBPS``); a generation added by overrides gets the default.
    """

    name: str
    memory_mib: int
    bandwidth_gbps: float
    bf16_tflops: float
    fp8_tflops: float
    interconnect: str
    nvlink_gbps: float
    throughput_weight: float
    family: str
    products: tuple[str, ...]
    max_gpus_per_node: int = 8
    weight_load_gbps: float = DEFAULT_WEIGHT_LOAD_GBPS
    decode_efficiency: float = DEFAULT_DECODE_EFFICIENCY
    prefill_efficiency: float = DEFAULT_PREFILL_EFFICIENCY
    perf_source: str = UNCALIBRATED

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def primary_product(self) -> str:
        return self.products[0]

    def matches(self, product: str, memory_mib: int) -> bool:
        """True when a node's product string and memory label describe this generation."""
        tolerance = self.memory_mib * MEMORY_TOLERANCE
        return product in self.products and abs(memory_mib - self.memory_mib) <= tolerance


def measured_weight(bandwidth_gbps: float, decode_efficiency: float) -> float:
    """Relative decode throughput: measured bandwidth over the A100-80GB's (2 decimals)."""
    reference = REFERENCE_BANDWIDTH_GBPS * REFERENCE_DECODE_EFFICIENCY
    return round(bandwidth_gbps * decode_efficiency / reference, 2)


def _gpu(
    name: str,
    *,
    bandwidth_gbps: float,
    decode_efficiency: float = DEFAULT_DECODE_EFFICIENCY,
    **fields: object,
) -> GpuSpec:
    return GpuSpec(
        name=name,
        bandwidth_gbps=bandwidth_gbps,
        decode_efficiency=decode_efficiency,
        throughput_weight=measured_weight(bandwidth_gbps, decode_efficiency),
        **fields,  # type: ignore[arg-type]
    )


# Measured efficiencies, by source (replayed in ``gpufleet.sim.calibration``):
# - A100: johnmusgrave.com/p/vllm-throughput-latency-sweep-on (Llama-3.1-8B, 1x A100-40GB,
#   vLLM 0.23): C=1 decode at 75 tok/s, ~77 % of the bandwidth floor -> 0.80 with the
#   step overheads; prefill 0.65 of dense peak.
# - H100 vs A100-80GB: LambdaLabsML/vllm-benchmark results/prompt_10 (Meta-Llama-3-8B-
#   Instruct BF16, TP 1, vLLM 0.6, 10 ShareGPT prompts sent at once, 2024-09): mean TTFT
#   126.9 ms on A100-80GB SXM vs 62.4 ms on H100 SXM (2.03x, where the data-sheet FLOPS
#   ratio is 3.17x), mean ITL 115.0 vs 72.4 ms per 10-token chunk (1.59x, bandwidth
#   ratio 1.64x). Hopper's prompt processing reaches ~0.43 of its dense peak, decode the
#   same 0.80 of bandwidth as Ampere.
# - B200 vs H100: research.aimultiple.com/multi-gpu (vLLM, Llama-3.1-8B-Instruct, one GPU,
#   saturated offline load, 2025-09): B200 31,343 tok/s, "77 % faster than the H100"
#   (1.77x, where the bandwidth ratio is 2.39x). Decode at 0.65 of its 8 TB/s fits it
#   (simulated 1.63x); its prompt processing is taken at Hopper's 0.43 (no same-setup
#   TTFT figure was found).
# - H200: no same-setup figure; Hopper's efficiencies on its own bandwidth.
# - L40S vs H100: Red Hat's MLPerf Inference v5.1 submissions (redhat.com blog "Efficient
#   and reproducible LLM inference: Red Hat MLPerf Inference v5.1 results", 2025-09):
#   Llama-3.1-8B-Instruct FP8, vLLM 0.10.0, one GPU, Offline (CNN/DailyMail
#   summarisation): 5777 tokens/s on an H100, 1642 on an L40S, 3.52x where the FP8 peak
#   ratio is 2.70x. Derived, taking the unpublished lengths as 1024-token prompts and
#   128-token summaries (9 tokens processed per token generated, 16 GFLOP each): the
#   H100 ran at ~42 % of its FP8 peak, the L40S at ~32 %, 0.76x the H100's share (0.33
#   of dense peak by Hopper's 0.43). Replayed through the engine, 0.30 reproduces the
#   ratio (3.37x; 0.33 gives 3.15x) and puts L40S prompt processing at 0.54x an
#   A100-80GB's. Decode keeps the A100 fit: a prompt-heavy Offline run does not pin it.
# - A10G: no same-setup figure; the A100 fit.
_LAMBDA = "LambdaLabsML/vllm-benchmark results/prompt_10, Llama-3-8B, vLLM 0.6"
_MUSGRAVE = "johnmusgrave.com/p/vllm-throughput-latency-sweep-on, Llama-3.1-8B, vLLM 0.23"
_WMX = "ai.wmx.dev/benchmarks, Qwen2.5-0.5B on L4, vLLM 0.23"
_AIMULTIPLE = "research.aimultiple.com/multi-gpu, Llama-3.1-8B, vLLM (B200 1.77x H100)"
_REDHAT = (
    "Red Hat MLPerf Inference v5.1 (redhat.com blog), Llama-3.1-8B FP8, vLLM 0.10.0: "
    "Offline 3.52x slower than an H100; decode uncalibrated (the A100 fit)"
)


# Product strings: GFD takes the NVML device name, drops characters outside
# [A-Za-z0-9-_. ] and joins the words with "-" (NVIDIA/k8s-device-plugin,
# internal/lm/resource.go, sanitise); "NVIDIA H100 80GB HBM3" becomes
# "NVIDIA-H100-80GB-HBM3". Families are GFD's getArchFamily values (same file), from the
# CUDA compute capability: 8.0/8.6 ampere, 8.9 ada-lovelace, 9.0 hopper, 10.x blackwell.
# Memory: the MiB nvidia-smi / NVML report for that board. Time-sliced ("-SHARED") and
# MIG ("-MIG-1g.10gb") products are deliberately not matched: vLLM needs whole GPUs.
_GPUS: tuple[GpuSpec, ...] = (
    # NVIDIA publishes no A10G data sheet; 24 GB GDDR6 at 600 GB/s per the AWS EC2 G5 page;
    # tensor throughput is the commonly quoted 70 TFLOPS dense (the A10 data sheet, at
    # higher clocks, gives 125). Ampere has no FP8.
    _gpu(
        "A10G", memory_mib=23028, bandwidth_gbps=600.0, bf16_tflops=70.0, fp8_tflops=0.0,
        interconnect="pcie", nvlink_gbps=0.0, family="ampere", products=("NVIDIA-A10G",),
        weight_load_gbps=0.4,
    ),
    # NVIDIA L4 data sheet: 24 GB, 300 GB/s, BF16 121 / FP8 242.5 TFLOPS dense.
    _gpu(
        "L4", memory_mib=23034, bandwidth_gbps=300.0, bf16_tflops=121.0, fp8_tflops=242.5,
        interconnect="pcie", nvlink_gbps=0.0, family="ada-lovelace", products=("NVIDIA-L4",),
        weight_load_gbps=0.4,
        perf_source=_WMX,
    ),
    # NVIDIA L40S data sheet: 48 GB, 864 GB/s, BF16 362 / FP8 733 TFLOPS dense.
    _gpu(
        "L40S", memory_mib=46068, bandwidth_gbps=864.0, bf16_tflops=362.0, fp8_tflops=733.0,
        interconnect="pcie", nvlink_gbps=0.0, family="ada-lovelace", products=("NVIDIA-L40S",),
        weight_load_gbps=0.5,
        prefill_efficiency=0.30, perf_source=_REDHAT,
    ),
    # NVIDIA A100 data sheet: 40GB SXM4 1555 GB/s, BF16 312 TFLOPS dense, NVLink 600 GB/s.
    _gpu(
        "A100-40GB", memory_mib=40960, bandwidth_gbps=1555.0, bf16_tflops=312.0,
        fp8_tflops=0.0, interconnect="nvlink", nvlink_gbps=600.0, family="ampere",
        products=("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
        weight_load_gbps=1.5,
        perf_source=_MUSGRAVE,
    ),
    # NVIDIA A100 data sheet: 80GB SXM4 2039 GB/s (PCIe 1935), BF16 312 TFLOPS dense.
    _gpu(
        "A100-80GB", memory_mib=81920, bandwidth_gbps=2039.0, bf16_tflops=312.0,
        fp8_tflops=0.0, interconnect="nvlink", nvlink_gbps=600.0, family="ampere",
        products=("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
        weight_load_gbps=1.5,
        perf_source=f"{_MUSGRAVE}; {_LAMBDA}",
    ),
    # NVIDIA H100 data sheet, SXM5: 3.35 TB/s, BF16 989 / FP8 1979 TFLOPS dense, NVLink
    # 900 GB/s. The SXM5 board reports as "NVIDIA H100 80GB HBM3"; the PCIe card (2 TB/s,
    # 756 BF16 TFLOPS) shares the memory size and is served by the same generation.
    _gpu(
        "H100-80GB", memory_mib=81559, bandwidth_gbps=3350.0, bf16_tflops=989.0,
        fp8_tflops=1979.0, interconnect="nvlink", nvlink_gbps=900.0, family="hopper",
        products=("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
        weight_load_gbps=2.0,
        prefill_efficiency=0.43, perf_source=_LAMBDA,
    ),
    # NVIDIA H200 data sheet, SXM: 141 GB HBM3e at 4.8 TB/s, same tensor cores as H100.
    _gpu(
        "H200", memory_mib=143771, bandwidth_gbps=4800.0, bf16_tflops=989.0,
        fp8_tflops=1979.0, interconnect="nvlink", nvlink_gbps=900.0, family="hopper",
        products=("NVIDIA-H200", "NVIDIA-H200-NVL"),
        weight_load_gbps=2.0,
        prefill_efficiency=0.43,
        perf_source=f"Hopper as H100-80GB ({_LAMBDA}); no same-setup H200 figure",
    ),
    # NVIDIA HGX B200 data sheet, per GPU (8-GPU totals / 8): 8 TB/s, BF16 2.25 /
    # FP8 4.5 PFLOPS dense, NVLink 5 1.8 TB/s.
    _gpu(
        "B200", memory_mib=183359, bandwidth_gbps=8000.0, bf16_tflops=2250.0,
        fp8_tflops=4500.0, interconnect="nvlink", nvlink_gbps=1800.0, family="blackwell",
        products=("NVIDIA-B200",),
        weight_load_gbps=2.5,
        decode_efficiency=0.65, prefill_efficiency=0.43, perf_source=_AIMULTIPLE,
    ),
)  # fmt: skip

GPUS: Mapping[str, GpuSpec] = {g.name: g for g in _GPUS}


class UnknownGpu(KeyError):
    """A GPU generation name that is not in the catalog; ``args`` = (name, known names,
    the closest names)."""

    def __str__(self) -> str:
        known = self.args[1] if len(self.args) > 1 else tuple(GPUS)
        closest = self.args[2] if len(self.args) > 2 else ()
        return (
            f"unknown GPU generation {self.args[0]!r}; {lookup.did_you_mean(closest)}"
            f"known: {', '.join(known)}"
        )


def get(name: str, gpus: Mapping[str, GpuSpec] = GPUS) -> GpuSpec:
    """The entry for canonical ``name``; raises ``UnknownGpu`` listing the known names."""
    try:
        return gpus[name]
    except KeyError:
        raise UnknownGpu(name, tuple(gpus)) from None


def resolve(typed: str, gpus: Mapping[str, GpuSpec] = GPUS) -> GpuSpec:
    """The entry a person means by ``typed``: any case, a GPU Feature Discovery product
    string, or a unique start (``H100`` is ``H100-80GB``; ``A100`` is ambiguous), as
    ``lookup.resolve``. Raises ``UnknownGpu`` with the closest names."""
    aliases = {product: gpu.name for gpu in gpus.values() for product in gpu.products}
    try:
        return gpus[lookup.resolve(typed, gpus, aliases)]
    except lookup.LookupFailed as exc:
        raise UnknownGpu(typed, tuple(gpus), exc.candidates) from None


def identify(labels: Mapping[str, str], gpus: Mapping[str, GpuSpec] = GPUS) -> GpuSpec | None:
    """The generation a node's GFD labels describe, or None when they match none.

    Both the product string (exactly) and the memory label (within ``MEMORY_TOLERANCE``)
    must match; a node without either label, or with a non-numeric memory label, is None.
    """
    product = labels.get(PRODUCT_LABEL)
    memory = labels.get(MEMORY_LABEL)
    if product is None or memory is None or not memory.isdigit():
        return None
    return next((gpu for gpu in gpus.values() if gpu.matches(product, int(memory))), None)
