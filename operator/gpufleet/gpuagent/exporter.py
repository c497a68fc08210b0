"""The agent's readings as DCGM-exporter metrics, plus its own verdict series.

Names and labels follow dcgm-exporter (etc/default-counters.csv and its ``gpu``,
``UUID``, ``device``, ``modelName``, ``Hostname`` labels), so dashboards, alerts and the
router's ``gpuMemoryUsed`` signal read the agent as they read the exporter:
``DCGM_FI_DEV_GPU_TEMP`` (°C), ``DCGM_FI_DEV_FB_USED`` / ``DCGM_FI_DEV_FB_FREE`` (MiB),
``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_POWER_USAGE`` (W),
``DCGM_FI_DEV_ECC_SBE_VOL_TOTAL`` / ``DCGM_FI_DEV_ECC_DBE_VOL_TOTAL`` (volatile single-
and double-bit ECC errors), ``DCGM_FI_DEV_XID_ERRORS`` (the last XID, 0 = none) and
``DCGM_FI_DEV_CLOCK_THROTTLE_REASONS`` (NVML's reason bits). All are gauges, as the
exporter serves them. gpufleet's own: ``gpufleet_gpu_healthy`` (1 healthy, 0 not; absent
before the first read), ``gpufleet_gpu_agent_read_errors_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpufleet.gpuagent.readings import GpuReading
from gpufleet.gpuagent.verdict import Verdict

LABELS = ("gpu", "UUID", "device", "modelName", "Hostname")
_FIELDS: tuple[tuple[str, str, Callable[[GpuReading], float | None]], ...] = (
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temperature_c),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: g.memory_used_mib),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).",
     lambda g: g.memory_total_mib - g.memory_used_mib),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.utilization_percent),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.",
     lambda g: g.ecc_corrected),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.",
     lambda g: g.ecc_uncorrected),
    ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.",
     lambda g: g.last_xid),
    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (bitmask).",
     lambda g: g.throttle_reasons),
)  # fmt: skip


class AgentCollector(Collector):
    """Collects at scrape time from ``read()``: the GPUs, the verdict, the read errors."""

    def __init__(
        self,
        *,
        hostname: str,
        read: Callable[[], tuple[tuple[GpuReading, ...], Verdict | None, int]],
    ) -> None:
        self._hostname = hostname
        self._read = read

    def collect(self) -> Iterable[Metric]:
        gpus, verdict, errors = self._read()
        for name, doc, value_of in _FIELDS:
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            for gpu in gpus:
                value = value_of(gpu)
                if value is not None:
                    family.add_metric(self._labels(gpu), float(value))
            yield family
        if verdict is not None:
            yield GaugeMetricFamily(
                "gpufleet_gpu_healthy",
                "1 when every GPU of the pod passes the agent's health checks, else 0.",
                value=1.0 if verdict.healthy else 0.0,
            )
        yield CounterMetricFamily(
            "gpufleet_gpu_agent_read_errors",
            "Reads of the GPUs (NVML or the twin) that failed.",
            value=float(errors),
        )

    def _labels(self, gpu: GpuReading) -> list[str]:
        return [str(gpu.index), gpu.uuid, f"nvidia{gpu.index}", gpu.name, self._hostname]


def registry(collector: AgentCollector) -> CollectorRegistry:
    out = CollectorRegistry()
    out.register(collector)
    return out
