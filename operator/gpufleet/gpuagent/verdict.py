"""Whether a pod's GPUs are fit to take new requests, and why not (pure).

A GPU is unhealthy while any of these holds (``Thresholds``; the defaults are the
ModelPool's ``spec.serving.gpuHealth`` defaults):

- its temperature is at or above ``max_temperature_c`` (85 °C: below the slowdown
  temperature of current data-centre GPUs, so the router moves traffic away before the
  clocks drop);
- its volatile uncorrectable ECC errors exceed ``max_uncorrectable_ecc`` (0: one
  double-bit error means corrupt results are possible until the GPU is reset);
- its framebuffer is at or above ``max_memory_percent`` full (98 %: vLLM preallocates
  ``gpuMemoryUtilization``, so memory past it is another process's or a leak, and the
  next allocation may fail);
- a critical XID (``CRITICAL_XIDS``) was reported within the last ``xid_hold_seconds``.

The pod's verdict is healthy only when every GPU is; a pod whose agent sees no GPU at
all is healthy (nothing to judge), and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from gpufleet.gpuagent.readings import GpuReading, XidEvent

# XIDs that mean the GPU, its memory or its links failed, as opposed to an application
# fault (13, 31, 43 …). NVIDIA's XID catalog (docs.nvidia.com/deploy/xid-errors): 48
# double-bit ECC, 61/62 internal micro-controller fault, 63/64 row remapping,
# 74 NVLink error, 79 GPU fallen off the bus, 92 high single-bit ECC rate, 94/95
# contained/uncontained ECC error, 119/120 GSP (firmware) error.
CRITICAL_XIDS = frozenset({48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a GPU stops being healthy (see the module docstring)."""

    max_temperature_c: float = 85.0
    max_memory_percent: float = 98.0
    max_uncorrectable_ecc: int = 0
    xid_hold_seconds: float = 300.0
    critical_xids: frozenset[int] = CRITICAL_XIDS


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Healthy or not; ``reasons`` name each GPU and limit at fault."""

    healthy: bool
    reasons: tuple[str, ...] = ()
    gpus: int = 0


def gpu_problems(gpu: GpuReading, limits: Thresholds) -> list[str]:
    """What is wrong with one GPU under ``limits`` (empty when nothing is)."""
    out = []
    where = f"GPU {gpu.index} ({gpu.uuid})"
    if gpu.temperature_c >= limits.max_temperature_c:
        out.append(f"{where} at {gpu.temperature_c:g} °C (limit {limits.max_temperature_c:g})")
    if gpu.ecc_uncorrected is not None and gpu.ecc_uncorrected > limits.max_uncorrectable_ecc:
        out.append(f"{where} has {gpu.ecc_uncorrected} uncorrectable ECC errors "
                   f"(limit {limits.max_uncorrectable_ecc})")  # fmt: skip
    if gpu.memory_percent >= limits.max_memory_percent:
        out.append(f"{where} memory {gpu.memory_percent:.1f} % used "
                   f"(limit {limits.max_memory_percent:g} %)")  # fmt: skip
    return out


def recent_critical(
    events: Iterable[XidEvent], *, now: float, limits: Thresholds
) -> list[XidEvent]:
    """The critical XID events still within the hold time."""
    return [
        e for e in events
        if e.xid in limits.critical_xids and now - e.at < limits.xid_hold_seconds
    ]  # fmt: skip


def judge(
    gpus: Sequence[GpuReading],
    xids: Iterable[XidEvent],
    *,
    now: float,
    limits: Thresholds = Thresholds(),
) -> Verdict:
    """The pod's verdict over its GPUs and the XID events seen so far."""
    reasons = [p for gpu in gpus for p in gpu_problems(gpu, limits)]
    for event in recent_critical(xids, now=now, limits=limits):
        ago = now - event.at
        reasons.append(f"GPU {event.gpu_uuid} reported XID {event.xid} {ago:.0f} s ago "
                       f"(held {limits.xid_hold_seconds:g} s)")  # fmt: skip
    return Verdict(healthy=not reasons, reasons=tuple(reasons), gpus=len(gpus))


def keep_recent(
    events: Iterable[XidEvent], *, now: float, limits: Thresholds, most: int = 256
) -> list[XidEvent]:
    """The events worth keeping: critical ones within the hold time, newest ``most``."""
    return recent_critical(events, now=now, limits=limits)[-most:]
