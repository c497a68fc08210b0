"""The agent's readings as DCGM-exporter metrics, plus its own verdict series.

The DCGM fields, their help texts and labels are dcgm-exporter's (``hardware.dcgm``), so
dashboards, alerts and the router's ``gpuMemoryUsed`` signal read the agent as they read
the exporter; a field NVML did not report is left out. gpufleet's own:
``gpufleet_gpu_healthy`` (1 healthy, 0 not; absent before the first read),
``gpufleet_gpu_agent_read_errors_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpufleet.gpuagent.readings import GpuReading
from gpufleet.gpuagent.verdict import Verdict
from gpufleet.hardware import dcgm

# What each DCGM field reads of a GPU (None: NVML did not report it).
VALUES: Mapping[dcgm.Field, Callable[[GpuReading], float | None]] = {
    dcgm.GPU_UTIL: lambda g: g.utilization_percent,
    dcgm.FB_USED: lambda g: g.memory_used_mib,
    dcgm.FB_FREE: lambda g: g.memory_total_mib - g.memory_used_mib,
    dcgm.GPU_TEMP: lambda g: g.temperature_c,
    dcgm.POWER_USAGE: lambda g: g.power_w,
    dcgm.ECC_SBE_VOL_TOTAL: lambda g: g.ecc_corrected,
    dcgm.ECC_DBE_VOL_TOTAL: lambda g: g.ecc_uncorrected,
    dcgm.XID_ERRORS: lambda g: g.last_xid,
    dcgm.CLOCK_THROTTLE_REASONS: lambda g: g.throttle_reasons,
}


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
        for field in dcgm.FIELDS:
            family = GaugeMetricFamily(field.name, field.help, labels=dcgm.LABELS)
            for gpu in gpus:
                value = VALUES[field](gpu)
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
