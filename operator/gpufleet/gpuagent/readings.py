"""What the agent reads off one GPU, and the interface it is read through (pure).

``GpuSource`` is the consumer-side interface: ``gpufleet.gpuagent.nvml`` implements it
over pynvml, ``gpufleet.gpuagent.twinsource`` over the dev cluster's simulator, and tests
with literals. ``read`` returns the GPUs' current state and the XID events that
happened since the previous read (NVML reports XIDs as events, not as a counter). A
field NVML does not support on a GPU (ECC on a GPU without it) is None.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

# NVML's clocks-event (throttle) reason bits (nvml.h, nvmlClocksEventReason*), the
# values DCGM_FI_DEV_CLOCK_THROTTLE_REASONS carries.
THROTTLE_GPU_IDLE = 0x1
THROTTLE_SW_POWER_CAP = 0x4
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
THERMAL_THROTTLES = THROTTLE_SW_THERMAL | THROTTLE_HW_THERMAL


@dataclasses.dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment: NVML's name, temperature (°C), framebuffer memory (MiB),
    utilisation (%), power (W), volatile ECC counts, throttle reason bits and the last
    XID seen (0 = none), as DCGM reports ``DCGM_FI_DEV_XID_ERRORS``."""

    index: int
    uuid: str
    name: str
    temperature_c: float
    memory_used_mib: int
    memory_total_mib: int
    utilization_percent: float
    power_w: float | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    throttle_reasons: int = 0
    last_xid: int = 0

    @property
    def memory_percent(self) -> float:
        if self.memory_total_mib <= 0:
            return 0.0
        return 100.0 * self.memory_used_mib / self.memory_total_mib


@dataclasses.dataclass(frozen=True, slots=True)
class XidEvent:
    """An XID error NVML reported for the GPU ``gpu_uuid``; ``at`` in the agent's clock."""

    gpu_uuid: str
    xid: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The GPUs now, and the XID events since the previous ``read``."""

    gpus: tuple[GpuReading, ...]
    xids: tuple[XidEvent, ...] = ()


class GpuSource(Protocol):
    """The GPUs this container watches (NVML, the twin's simulator, or a fake)."""

    def read(self) -> Snapshot: ...

    def close(self) -> None: ...


class SourceError(Exception):
    """The GPUs could not be read; the message names the call that failed."""
