"""What the worker knows about one GPU, and the interface it is read through (pure).

``Inventory`` is the consumer-side interface: ``gpufleet.worker.nvml`` implements it over
pynvml, tests implement it with literals. A ``Gpu`` carries what the checks need: NVML's
name (``"NVIDIA H100 80GB HBM3"``), total memory in MiB, UUID and how many NVLink links
are active (0 on a PCIe-only GPU or where NVML reports NVLink unsupported).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU as NVML shows it to this container."""

    index: int
    name: str
    memory_mib: int
    uuid: str = ""
    nvlink_links: int = 0

    @property
    def product(self) -> str:
        """The GPU Feature Discovery product label: NVML's name with dashes for spaces."""
        return "-".join(self.name.split())

    def __str__(self) -> str:
        return f"GPU {self.index} {self.name!r} ({self.memory_mib} MiB)"


class Inventory(Protocol):
    """The GPUs this container can see (NVML, or a fake in tests)."""

    def gpus(self) -> Sequence[Gpu]: ...


class InventoryError(Exception):
    """The GPUs could not be read (no driver, NVML not loadable); the message says why."""
