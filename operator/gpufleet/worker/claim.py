"""What the pod asked for: the GPU generation and how many GPUs (pure).

The generation comes from the container's environment, set by the operator from the
variant it rendered (the same generation its required node affinity selects):

- ``GPUFLEET_GPU_GENERATION``: the catalog name (``H100-80GB``), used in messages and,
  alone, to look up the products and memory in the built-in catalog;
- ``GPUFLEET_GPU_PRODUCTS`` (comma-separated GPU Feature Discovery product strings) and
  ``GPUFLEET_GPU_MEMORY_MIB``: the generation spelled out, which wins over the lookup (a
  site catalog with overrides can name generations this image does not know).

The GPU count is vLLM's: ``--tensor-parallel-size`` x ``--pipeline-parallel-size`` from
the arguments the worker passes on (``-tp``/``-pp``, ``=`` and underscore spellings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from gpufleet.hardware import catalog

GENERATION_ENV = "GPUFLEET_GPU_GENERATION"
PRODUCTS_ENV = "GPUFLEET_GPU_PRODUCTS"
MEMORY_ENV = "GPUFLEET_GPU_MEMORY_MIB"
ENV_NAMES = (GENERATION_ENV, PRODUCTS_ENV, MEMORY_ENV)

_SHORT = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size"}


class ClaimError(ValueError):
    """The pod's claim cannot be read; the message names the variable or flag at fault."""


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """The generation the node was chosen for, and the GPUs vLLM will use."""

    generation: str
    products: tuple[str, ...]
    memory_mib: int
    tensor_parallel: int = 1
    pipeline_parallel: int = 1

    @property
    def gpu_count(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    def matches(self, product: str, memory_mib: int) -> bool:
        """Product exactly, memory within the catalog's tolerance (as node affinity does)."""
        slack = self.memory_mib * catalog.MEMORY_TOLERANCE
        return product in self.products and abs(memory_mib - self.memory_mib) <= slack

    def describe(self) -> str:
        products = " or ".join(self.products)
        return f"{self.generation} ({products}, {self.memory_mib} MiB)"


def parallel_sizes(vllm_args: Sequence[str]) -> tuple[int, int]:
    """``(tensor, pipeline)`` parallel sizes as vLLM reads them; the last one given wins."""
    sizes = {"--tensor-parallel-size": 1, "--pipeline-parallel-size": 1}
    args = list(vllm_args)
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        flag = _SHORT.get(flag, flag.replace("_", "-"))
        if flag not in sizes:
            continue
        raw = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
        if not raw.isdigit() or int(raw) < 1:
            raise ClaimError(f"vLLM argument {arg}: expected a positive integer, got {raw!r}")
        sizes[flag] = int(raw)
    return sizes["--tensor-parallel-size"], sizes["--pipeline-parallel-size"]


def _generation(env: Mapping[str, str]) -> tuple[str, tuple[str, ...], int]:
    name = env.get(GENERATION_ENV, "").strip()
    products = tuple(p.strip() for p in env.get(PRODUCTS_ENV, "").split(",") if p.strip())
    memory = env.get(MEMORY_ENV, "").strip()
    if products or memory:
        if not products or not memory.isdigit():
            raise ClaimError(
                f"{PRODUCTS_ENV} and {MEMORY_ENV} go together: got products={products!r}, "
                f"memory={memory!r} (memory is an integer in MiB)"
            )
        return name or products[0], products, int(memory)
    if not name:
        raise ClaimError(
            f"the pod names no GPU generation: set {GENERATION_ENV} (a catalog name, one of "
            f"{', '.join(catalog.GPUS)}) or {PRODUCTS_ENV} with {MEMORY_ENV}"
        )
    try:
        spec = catalog.get(name)
    except catalog.UnknownGpu as exc:
        raise ClaimError(f"{GENERATION_ENV}={name}: {exc}") from exc
    return spec.name, spec.products, spec.memory_mib


def from_env(env: Mapping[str, str], vllm_args: Sequence[str]) -> Claim:
    """The claim of a container with environment ``env`` running vLLM with ``vllm_args``."""
    generation, products, memory = _generation(env)
    tp, pp = parallel_sizes(vllm_args)
    return Claim(generation, products, memory, tensor_parallel=tp, pipeline_parallel=pp)
