"""DCGM-exporter's GPU metrics, as every part of gpufleet that serves or reads them names
them (pure data).

Names, help texts and labels follow dcgm-exporter's default counters
(etc/default-counters.csv) and its ``gpu``, ``UUID``, ``device``, ``modelName``,
``Hostname`` labels, so dashboards, alerts and the router's GPU signals read gpufleet's
series as they read the exporter's. The GPU health agent exports them from NVML
(``gpuagent.exporter``), the simulator from its simulated GPUs (``sim.metrics``), and a
RoutingPolicy's metric names default to three of them (``api.runtime.MetricNames``). All
are gauges, as the exporter serves them.
"""

from __future__ import annotations

import dataclasses

LABELS = ("gpu", "UUID", "device", "modelName", "Hostname")


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One DCGM field: its metric name and the exporter's help text."""

    name: str
    help: str


GPU_UTIL = Field("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
FB_USED = Field("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
FB_FREE = Field("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
GPU_TEMP = Field("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
POWER_USAGE = Field("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
# The health fields: volatile single- and double-bit ECC errors, the last XID (0 = none)
# and NVML's clock throttle reason bits.
ECC_SBE_VOL_TOTAL = Field(
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors."
)
ECC_DBE_VOL_TOTAL = Field(
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors."
)
XID_ERRORS = Field("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.")
CLOCK_THROTTLE_REASONS = Field(
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (bitmask)."
)

FIELDS: tuple[Field, ...] = (
    GPU_UTIL,
    FB_USED,
    FB_FREE,
    GPU_TEMP,
    POWER_USAGE,
    ECC_SBE_VOL_TOTAL,
    ECC_DBE_VOL_TOTAL,
    XID_ERRORS,
    CLOCK_THROTTLE_REASONS,
)
