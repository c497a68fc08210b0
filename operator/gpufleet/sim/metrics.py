"""vLLM and DCGM-exporter metrics of one simulated replica, on per-app registries.

vLLM names and histogram buckets follow ``vllm/v1/metrics/loggers.py`` (PrometheusStatLogger):
gauges ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` /
``vllm:kv_cache_usage_perc`` (before vLLM 0.10: ``vllm:gpu_cache_usage_perc``), counters
``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits`` (tokens), ``vllm:prompt_tokens``,
``vllm:generation_tokens``, ``vllm:num_preemptions``, ``vllm:request_success`` and the
histograms ``vllm:time_to_first_token_seconds``, ``vllm:inter_token_latency_seconds``
(older ``vllm:time_per_output_token_seconds``), ``vllm:e2e_request_latency_seconds``; all
labelled ``model_name`` and ``engine`` (``"0"``: one engine core per server, as vLLM
labels its series since V1), ``vllm:request_success`` also ``finished_reason``, every
reason vLLM has at zero from the start. ``legacy_names`` adds the older names next to
the current ones.

DCGM fields, help texts and labels are dcgm-exporter's (``hardware.dcgm``, the names
gpufleet's GPU health agent exports too), one series per GPU. A GPU's UUID is NVML's
form (``GPU-`` and a UUID), derived from the simulator's seed (its host and address) and
the GPU's index: stable across restarts, distinct between simulators.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpufleet.hardware import dcgm
from gpufleet.sim.engine import Counters

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
               5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
# vLLM's FinishReason names (vllm/v1/engine/__init__.py, v0.30.0), each a
# vllm:request_success series from the start.
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
# The data-parallel rank vLLM puts in the ``engine`` label: 0 without data parallelism.
ENGINE = "0"
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class VllmMetrics:
    """The vLLM series of one served model."""

    def __init__(self, model: str, *, legacy_names: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = model
        self._labels = (model, ENGINE)
        reg = self.registry
        label = ["model_name", "engine"]
        self._running = Gauge("vllm:num_requests_running", "Running requests", label, registry=reg)
        self._waiting = Gauge("vllm:num_requests_waiting", "Waiting requests", label, registry=reg)
        kv_names = ["vllm:kv_cache_usage_perc"]
        if legacy_names:
            kv_names.append("vllm:gpu_cache_usage_perc")
        self._kv = [Gauge(n, "KV-cache usage, 1 = full", label, registry=reg) for n in kv_names]
        self._counters = {
            field: Counter(name, doc, label, registry=reg)
            for field, name, doc in (
                ("prompt_tokens", "vllm:prompt_tokens", "Prefill tokens processed"),
                ("generation_tokens", "vllm:generation_tokens", "Generation tokens"),
                ("prefix_queries", "vllm:prefix_cache_queries", "Prefix cache queries (tokens)"),
                ("prefix_hits", "vllm:prefix_cache_hits", "Prefix cache hits (tokens)"),
                ("preemptions", "vllm:num_preemptions", "Preemptions"),
            )
        }
        self._seen = Counters()
        self._success = Counter(
            "vllm:request_success", "Finished requests", [*label, "finished_reason"], registry=reg
        )
        self._ttft = Histogram("vllm:time_to_first_token_seconds", "TTFT", label,
                               buckets=TTFT_BUCKETS, registry=reg)  # fmt: skip
        itl_names = ["vllm:inter_token_latency_seconds"]
        if legacy_names:
            itl_names.append("vllm:time_per_output_token_seconds")
        self._itl = [Histogram(n, "Inter-token latency", label, buckets=ITL_BUCKETS,
                               registry=reg) for n in itl_names]  # fmt: skip
        self._e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end latency", label,
                              buckets=E2E_BUCKETS, registry=reg)  # fmt: skip
        # Expose every series from the start, at zero, as vLLM does.
        for metric in (self._running, self._waiting, *self._kv, *self._counters.values(),
                       self._ttft, *self._itl, self._e2e):  # fmt: skip
            metric.labels(*self._labels)
        for reason in FINISH_REASONS:
            self._success.labels(*self._labels, reason)

    def update(self, *, running: int, waiting: int, kv_usage: float, counters: Counters) -> None:
        """Set the gauges and advance the counters to the engine's totals."""
        m = self._labels
        self._running.labels(*m).set(running)
        self._waiting.labels(*m).set(waiting)
        for gauge in self._kv:
            gauge.labels(*m).set(kv_usage)
        for field, counter in self._counters.items():
            delta = getattr(counters, field) - getattr(self._seen, field)
            if delta > 0:
                counter.labels(*m).inc(delta)
                setattr(self._seen, field, getattr(counters, field))

    def first_token(self, seconds: float) -> None:
        self._ttft.labels(*self._labels).observe(seconds)

    def inter_token(self, seconds: float) -> None:
        for hist in self._itl:
            hist.labels(*self._labels).observe(seconds)

    def finished(self, *, e2e_s: float, reason: str) -> None:
        self._e2e.labels(*self._labels).observe(e2e_s)
        self._success.labels(*self._labels, reason).inc()


@dataclasses.dataclass(frozen=True, slots=True)
class GpuState:
    """What DCGM (or NVML) would read off one GPU of a replica at one moment."""

    utilization: float
    fb_used_mib: int
    fb_total_mib: int
    temperature_c: float
    power_w: float
    index: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    throttle_reasons: int = 0
    last_xid: int = 0


# Board power limits (W), NVIDIA data sheets: A10G 150 (A10), L4 72, L40S 350, A100 SXM4
# 400, H100 SXM5 700, H200 SXM 700, HGX B200 1000. Idle draw is taken as 15 % of it.
TDP_W = {"A10G": 150.0, "L4": 72.0, "L40S": 350.0, "A100-40GB": 400.0, "A100-80GB": 400.0,
         "H100-80GB": 700.0, "H200": 700.0, "B200": 1000.0}  # fmt: skip
IDLE_TEMP_C, BUSY_TEMP_C = 32.0, 68.0
# An overheated simulated GPU reports thermal throttling from here on (NVML's
# clocks-event reasons SW_THERMAL 0x20 | HW_THERMAL 0x40); idle ones report GPU_IDLE 0x1.
THROTTLE_FROM_C = 85.0
THROTTLE_THERMAL, THROTTLE_IDLE = 0x20 | 0x40, 0x1


def gpu_state(gpu: str, *, utilization: float, fb_used_mib: int, fb_total_mib: int) -> GpuState:
    """Temperature and power follow utilization linearly between idle and busy."""
    u = min(1.0, max(0.0, utilization))
    tdp = TDP_W.get(gpu, 400.0)
    return GpuState(
        utilization=u,
        fb_used_mib=fb_used_mib,
        fb_total_mib=fb_total_mib,
        temperature_c=IDLE_TEMP_C + (BUSY_TEMP_C - IDLE_TEMP_C) * u,
        power_w=tdp * (0.15 + 0.85 * u),
        throttle_reasons=THROTTLE_IDLE if u == 0 else 0,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class GpuFault:
    """The GPU faults in force on one GPU (``faults.FaultConfig``'s gpu_* fields)."""

    index: int = 0
    temperature_c: float | None = None
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    last_xid: int = 0


def gpu_states(base: GpuState, *, gpus: int, fault: GpuFault) -> list[GpuState]:
    """Every GPU of a replica: ``base`` on each, ``fault`` applied to its GPU."""
    out = []
    for index in range(gpus):
        state = dataclasses.replace(base, index=index)
        if index == fault.index:
            hot = fault.temperature_c
            throttle = state.throttle_reasons
            if hot is not None and hot >= THROTTLE_FROM_C:
                throttle |= THROTTLE_THERMAL
            state = dataclasses.replace(
                state,
                temperature_c=state.temperature_c if hot is None else hot,
                ecc_corrected=fault.ecc_corrected,
                ecc_uncorrected=fault.ecc_uncorrected,
                throttle_reasons=throttle,
                last_xid=fault.last_xid,
            )
        out.append(state)
    return out


_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gpufleet.io/sim/gpu")


def gpu_uuid(seed: str, index: int) -> str:
    """GPU ``index`` of the simulator ``seed`` as NVML names GPUs (``GPU-8-4-4-4-12`` hex)."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{seed}/{index}')}"


# What each DCGM field reads of a simulated GPU, rounded as the exporter reports it.
DCGM_VALUES: Mapping[dcgm.Field, Callable[[GpuState], float]] = {
    dcgm.GPU_UTIL: lambda s: round(s.utilization * 100),
    dcgm.FB_USED: lambda s: s.fb_used_mib,
    dcgm.FB_FREE: lambda s: s.fb_total_mib - s.fb_used_mib,
    dcgm.GPU_TEMP: lambda s: round(s.temperature_c),
    dcgm.POWER_USAGE: lambda s: round(s.power_w, 3),
    dcgm.ECC_SBE_VOL_TOTAL: lambda s: s.ecc_corrected,
    dcgm.ECC_DBE_VOL_TOTAL: lambda s: s.ecc_uncorrected,
    dcgm.XID_ERRORS: lambda s: s.last_xid,
    dcgm.CLOCK_THROTTLE_REASONS: lambda s: s.throttle_reasons,
}


class DcgmCollector(Collector):
    """Collects DCGM fields at scrape time from ``read()``, one series per GPU."""

    def __init__(
        self,
        *,
        product: str,
        hostname: str,
        read: Callable[[], Sequence[GpuState]],
        uuid_seed: str = "",
    ) -> None:
        self._product = product
        self._hostname = hostname
        self._seed = uuid_seed or hostname
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        states = self._read()
        for field in dcgm.FIELDS:
            family = GaugeMetricFamily(field.name, field.help, labels=dcgm.LABELS)
            for state in states:
                family.add_metric(
                    [str(state.index), gpu_uuid(self._seed, state.index),
                     f"nvidia{state.index}", self._product,
                     self._hostname],
                    float(DCGM_VALUES[field](state)),
                )  # fmt: skip
            yield family


def dcgm_registry(collector: DcgmCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
