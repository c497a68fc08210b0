"""The GPUs through NVML (pynvml from ``nvidia-ml-py``): the real ``Inventory``.

NVML lists the devices mounted into the container (the device plugin mounts only those
allocated to it); ``checks.visible`` then applies ``CUDA_VISIBLE_DEVICES``. Every call
happens between ``nvmlInit`` and ``nvmlShutdown``; any NVML failure becomes an
``InventoryError`` naming the call.
"""

from __future__ import annotations

import pynvml

from gpufleet.worker.inventory import Gpu, InventoryError

_MIB = 1024 * 1024


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str; releases before 11.5 returned bytes.
    return value.decode() if isinstance(value, bytes) else value


def _active_nvlinks(handle: object) -> int:
    active = 0
    for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except pynvml.NVMLError:
            break  # NotSupported on PCIe GPUs, InvalidArgument past the device's last link
        active += state == pynvml.NVML_FEATURE_ENABLED
    return active


def _gpu(index: int) -> Gpu:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return Gpu(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        memory_mib=int(memory.total) // _MIB,
        uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
        nvlink_links=_active_nvlinks(handle),
    )


class NvmlInventory:
    """``Inventory`` read from the NVIDIA driver."""

    def gpus(self) -> list[Gpu]:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise InventoryError(f"NVML could not start (no NVIDIA driver here?): {exc}") from exc
        try:
            return [_gpu(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            raise InventoryError(f"NVML could not read the GPUs: {exc}") from exc
        finally:
            pynvml.nvmlShutdown()
