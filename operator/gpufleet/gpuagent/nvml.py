"""The GPUs through NVML (pynvml from ``nvidia-ml-py``): the real ``GpuSource``.

``NvmlSource`` initialises NVML once, registers every GPU for critical XID events and
reads each GPU's temperature, memory, utilisation, power, volatile ECC counts and
clocks-event (throttle) reasons on every ``read``, then drains the XID events that
arrived since the last one (``nvmlEventSetWait`` with a zero timeout). A field the GPU
does not support (``NVMLError`` on that call) is None or 0; a failure to list or open
the GPUs is a ``SourceError`` naming the call. The library is a constructor argument
(``pynvml`` by default), so tests drive the adapter with a fake module.

Not yet run against a real driver here (no GPU machine was available): the calls and
constants follow nvidia-ml-py 13's ``pynvml`` and NVML's API reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gpufleet.gpuagent.readings import GpuReading, Snapshot, SourceError, XidEvent

_MIB = 1024 * 1024
_MAX_EVENTS_PER_READ = 64


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str; releases before 11.5 returned bytes.
    return value.decode() if isinstance(value, bytes) else value


def _default_lib() -> Any:
    import pynvml  # only where a GPU is read

    return pynvml


class NvmlSource:
    """``GpuSource`` read from the NVIDIA driver through ``lib`` (pynvml's API)."""

    def __init__(self, lib: Any = None, *, clock: Callable[[], float] = time.time) -> None:
        self._nvml = lib if lib is not None else _default_lib()
        self._clock = clock
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise SourceError(f"nvmlInit: NVML could not start (no driver here?): {exc}") from exc
        try:
            count = self._nvml.nvmlDeviceGetCount()
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._uuids = [_text(self._nvml.nvmlDeviceGetUUID(h)) for h in self._handles]
        except self._nvml.NVMLError as exc:
            self._nvml.nvmlShutdown()
            raise SourceError(f"nvmlDeviceGet*: the GPUs could not be listed: {exc}") from exc
        self._events = self._register_xids()

    def _register_xids(self) -> Any:
        """An event set with every GPU that supports XID events; None when none does."""
        nvml = self._nvml
        try:
            events = nvml.nvmlEventSetCreate()
        except nvml.NVMLError:
            return None
        for handle in self._handles:
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, events)
            except nvml.NVMLError:
                continue  # NotSupported on this GPU: its XIDs go unseen
        return events

    def _optional(self, call: str, *args: object) -> Any:
        try:
            return getattr(self._nvml, call)(*args)
        except self._nvml.NVMLError:
            return None

    def _ecc(self, handle: object, kind: int) -> int | None:
        value = self._optional(
            "nvmlDeviceGetTotalEccErrors", handle, kind, self._nvml.NVML_VOLATILE_ECC
        )
        return None if value is None else int(value)

    def _throttle(self, handle: object) -> int:
        call = "nvmlDeviceGetCurrentClocksEventReasons"
        if not hasattr(self._nvml, call):  # before nvidia-ml-py 12.535
            call = "nvmlDeviceGetCurrentClocksThrottleReasons"
        return int(self._optional(call, handle) or 0)

    def _gpu(self, index: int, handle: object) -> GpuReading:
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        utilization = self._optional("nvmlDeviceGetUtilizationRates", handle)
        power_mw = self._optional("nvmlDeviceGetPowerUsage", handle)
        return GpuReading(
            index=index,
            uuid=self._uuids[index],
            name=_text(nvml.nvmlDeviceGetName(handle)),
            temperature_c=float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            memory_used_mib=int(memory.used) // _MIB,
            memory_total_mib=int(memory.total) // _MIB,
            utilization_percent=float(utilization.gpu) if utilization is not None else 0.0,
            power_w=None if power_mw is None else float(power_mw) / 1000.0,
            ecc_corrected=self._ecc(handle, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ecc_uncorrected=self._ecc(handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            throttle_reasons=self._throttle(handle),
        )

    def _drain_xids(self) -> list[XidEvent]:
        nvml = self._nvml
        out: list[XidEvent] = []
        if self._events is None:
            return out
        for _ in range(_MAX_EVENTS_PER_READ):
            try:
                data = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError:
                break  # NVML_ERROR_TIMEOUT: nothing more waiting
            uuid = _text(nvml.nvmlDeviceGetUUID(data.device))
            out.append(XidEvent(gpu_uuid=uuid, xid=int(data.eventData), at=self._clock()))
        return out

    def read(self) -> Snapshot:
        xids = self._drain_xids()
        try:
            gpus = tuple(self._gpu(i, h) for i, h in enumerate(self._handles))
        except self._nvml.NVMLError as exc:
            raise SourceError(f"NVML could not read the GPUs: {exc}") from exc
        return Snapshot(gpus=gpus, xids=tuple(xids))

    def close(self) -> None:
        if self._events is not None:
            self._optional("nvmlEventSetFree", self._events)
        self._optional("nvmlShutdown")
