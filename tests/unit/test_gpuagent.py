"""The GPU health agent: its verdict, the NVML adapter driven by a fake pynvml, the
DCGM names it exports and what ``/health`` answers."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest, parser

from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller.modelpool import render, variants
from gpufleet.devcluster import workloads
from gpufleet.gpuagent import app, exporter, twinsource, verdict
from gpufleet.gpuagent.nvml import NvmlSource
from gpufleet.gpuagent.readings import GpuReading, SourceError, XidEvent
from gpufleet.router import config as router_config
from gpufleet.router import discovery
from gpufleet.sim import replica, server
from gpufleet.sim.state import SimSettings

GPU = GpuReading(
    index=0, uuid="GPU-a", name="NVIDIA H100 80GB HBM3", temperature_c=60.0,
    memory_used_mib=72_000, memory_total_mib=81_559, utilization_percent=80.0,
    power_w=500.0, ecc_corrected=3, ecc_uncorrected=0,
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"temperature_c": 84.9}, None),
        ({"temperature_c": 85.0}, "GPU 0 (GPU-a) at 85 °C (limit 85)"),
        ({"temperature_c": 97.0}, "at 97 °C"),
        ({"ecc_uncorrected": 1}, "1 uncorrectable ECC errors (limit 0)"),
        ({"ecc_uncorrected": None}, None),  # ECC not supported: nothing to judge
        ({"ecc_corrected": 10_000}, None),  # corrected errors alone do not drain
        ({"memory_used_mib": 79_800}, None),  # 97.8 %
        ({"memory_used_mib": 79_930}, "memory 98.0 % used (limit 98 %)"),
    ],
)
def test_one_gpu_against_the_default_limits(changes: dict[str, Any], problem: str | None) -> None:
    found = verdict.judge([dataclasses.replace(GPU, **changes)], [], now=0.0)
    if problem is None:
        assert found == verdict.Verdict(healthy=True, gpus=1)
    else:
        assert not found.healthy
        assert any(problem in reason for reason in found.reasons), found.reasons


def test_a_pod_is_healthy_only_when_every_gpu_is() -> None:
    hot = dataclasses.replace(GPU, index=1, uuid="GPU-b", temperature_c=90.0)
    found = verdict.judge([GPU, hot], [], now=0.0)
    assert (found.healthy, found.gpus) == (False, 2)
    assert found.reasons == ("GPU 1 (GPU-b) at 90 °C (limit 85)",)


def test_limits_are_the_pools() -> None:
    strict = verdict.Thresholds(max_temperature_c=55, max_memory_percent=80)
    found = verdict.judge([GPU], [], now=0.0, limits=strict)
    assert len(found.reasons) == 2


@pytest.mark.parametrize(
    ("xid", "ago", "healthy"),
    [
        (79, 10.0, False),  # fallen off the bus
        (48, 299.0, False),  # double-bit ECC, still within the hold
        (48, 300.0, True),  # the hold is over
        (13, 1.0, True),  # an application's fault, not the GPU's
        (31, 1.0, True),
    ],
)
def test_critical_xids_hold_the_gpu_unhealthy(xid: int, ago: float, healthy: bool) -> None:
    events = [XidEvent(gpu_uuid="GPU-a", xid=xid, at=1000.0 - ago)]
    found = verdict.judge([GPU], events, now=1000.0)
    assert found.healthy is healthy
    if not healthy:
        assert found.reasons == (f"GPU GPU-a reported XID {xid} {ago:.0f} s ago (held 300 s)",)


def test_kept_xids_are_the_critical_recent_ones() -> None:
    events = [XidEvent("a", 79, 0.0), XidEvent("a", 13, 900.0), XidEvent("a", 94, 950.0)]
    kept = verdict.keep_recent(events, now=1000.0, limits=verdict.Thresholds())
    assert kept == [XidEvent("a", 94, 950.0)]


# A fake of the pynvml calls the adapter makes: two GPUs, the second without ECC,
# power or NVML's newer clocks-event call, and one queued XID event.
class FakeNvmlError(Exception):
    pass


@dataclasses.dataclass
class _Memory:
    used: int
    total: int


@dataclasses.dataclass
class _Util:
    gpu: int


@dataclasses.dataclass
class _Event:
    device: str
    eventData: int


class FakeNvml:
    NVMLError = FakeNvmlError
    NVML_TEMPERATURE_GPU = 0
    NVML_VOLATILE_ECC = 0
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, *, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.events: list[_Event] = [_Event("h1", 79)]
        self.registered: list[str] = []
        self.calls: list[str] = []
        self.temperature = {"h0": 71, "h1": 88}

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise FakeNvmlError("Driver Not Loaded")
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"h{i}"

    def nvmlDeviceGetUUID(self, h: str) -> bytes:
        return f"GPU-{h}".encode()  # bytes, as nvidia-ml-py before 11.5 returned

    def nvmlDeviceGetName(self, h: str) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.temperature[h]

    def nvmlDeviceGetMemoryInfo(self, h: str) -> _Memory:
        return _Memory(used=40_000 * 2**20, total=81_559 * 2**20)

    def nvmlDeviceGetUtilizationRates(self, h: str) -> _Util:
        return _Util(gpu=55)

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        if h == "h1":
            raise FakeNvmlError("Not Supported")
        return 412_500  # mW

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        if h == "h1":
            raise FakeNvmlError("Not Supported")
        return {0: 7, 1: 2}[kind]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:
        return 0x40 if h == "h1" else 0x1

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceRegisterEvents(self, h: str, kinds: int, events: str) -> None:
        assert kinds == self.nvmlEventTypeXidCriticalError
        self.registered.append(h)

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> _Event:
        assert timeout_ms == 0  # never blocks the read
        if not self.events:
            raise FakeNvmlError("Timeout")
        return self.events.pop(0)

    def nvmlEventSetFree(self, events: str) -> None:
        self.calls.append("free")


def test_the_nvml_adapter_reads_every_field_it_can() -> None:
    fake = FakeNvml()
    source = NvmlSource(fake, clock=lambda: 42.0)
    snapshot = source.read()
    first, second = snapshot.gpus
    assert first == GpuReading(
        index=0, uuid="GPU-h0", name="NVIDIA H100 80GB HBM3", temperature_c=71.0,
        memory_used_mib=40_000, memory_total_mib=81_559, utilization_percent=55.0,
        power_w=412.5, ecc_corrected=7, ecc_uncorrected=2, throttle_reasons=0x1,
    )  # fmt: skip
    assert (second.power_w, second.ecc_corrected, second.ecc_uncorrected) == (None, None, None)
    assert second.throttle_reasons == 0x40
    assert snapshot.xids == (XidEvent(gpu_uuid="GPU-h1", xid=79, at=42.0),)
    assert fake.registered == ["h0", "h1"]
    assert source.read().xids == ()  # an event is reported once
    source.close()
    assert fake.calls == ["init", "free", "shutdown"]


def test_the_nvml_adapter_verdict_end_to_end() -> None:
    source = NvmlSource(FakeNvml(), clock=lambda: 42.0)
    snapshot = source.read()
    found = verdict.judge(snapshot.gpus, snapshot.xids, now=50.0)
    assert not found.healthy
    assert [r.split(" ", 2)[1] for r in found.reasons] == ["0", "1", "GPU-h1"]  # ECC, heat, XID


def test_no_driver_is_a_source_error_naming_the_call() -> None:
    with pytest.raises(SourceError, match=r"nvmlInit: .*Driver Not Loaded"):
        NvmlSource(FakeNvml(fail_init=True))


def _state() -> app.AgentState:
    state = app.AgentState(app.AgentSettings(hostname="node-1"))
    hot = dataclasses.replace(GPU, index=1, uuid="GPU-b", temperature_c=91.0, power_w=None)
    state.record((GPU, hot), (XidEvent("GPU-b", 13, 5.0),), now=10.0)
    return state


def test_health_answers_503_with_reasons_and_200_when_unknown() -> None:
    state = _state()
    assert app.health_body(state) == (503, {
        "healthy": False, "reasons": ["GPU 1 (GPU-b) at 91 °C (limit 85)"], "gpus": 2,
        "readAt": 10.0,
    })  # fmt: skip
    state.failed("NVML could not read the GPUs: GPU is lost")
    assert app.health_body(state) == (
        200, {"healthy": None, "error": "NVML could not read the GPUs: GPU is lost", "gpus": 0}
    )  # fmt: skip


def test_metrics_carry_dcgm_names_and_labels() -> None:
    state = _state()
    collector = exporter.AgentCollector(
        hostname="node-1", read=lambda: (state.gpus, state.verdict, state.read_errors)
    )
    text = generate_latest(exporter.registry(collector)).decode()
    samples = {
        (s.name, s.labels.get("gpu")): (s.value, s.labels)
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = {"gpu": "1", "UUID": "GPU-b", "device": "nvidia1",
              "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-1"}  # fmt: skip
    assert samples["DCGM_FI_DEV_GPU_TEMP", "1"] == (91.0, labels)
    assert samples["DCGM_FI_DEV_XID_ERRORS", "1"] == (13.0, labels)
    assert samples["DCGM_FI_DEV_FB_FREE", "0"][0] == 81_559 - 72_000
    assert ("DCGM_FI_DEV_POWER_USAGE", "1") not in samples  # not supported: no series
    names = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
             "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")  # fmt: skip
    assert all((name, "0") in samples for name in names)
    assert samples["gpufleet_gpu_healthy", None][0] == 0.0
    assert samples["gpufleet_gpu_agent_read_errors_total", None][0] == 0.0


# The twin backend against a real simulator's GPU app (in-process): the faults set at
# /admin/faults reach the agent's readings, its verdict and its XID events.
async def test_the_twin_source_reads_the_simulators_gpu_faults() -> None:
    built = replica.build(replica.ReplicaSpec("llama-3.1-8b", "H100-80GB", 2, max_model_len=4096))
    settings = SimSettings(replica=built, served_model_name="m", hostname="node-a",
                                  gpu_uuid_seed="node-a/127.64.0.9:8000")  # fmt: skip
    first, second = settings.gpu_uuids()
    assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", first)  # NVML's form
    api = server.create_app(settings)
    gpus = TestServer(server.create_dcgm_app(api), host="127.0.0.1")
    await gpus.start_server()
    source = twinsource.TwinSource(str(gpus.make_url("")), clock=lambda: 100.0)
    try:
        calm = await asyncio.to_thread(source.read)
        assert [g.uuid for g in calm.gpus] == [first, second]
        assert calm.gpus[0].name == "NVIDIA H100 80GB HBM3"
        assert verdict.judge(calm.gpus, calm.xids, now=100.0).healthy
        async with aiohttp.ClientSession() as http:
            fault = {"gpu_fault_index": 1, "gpu_temperature_c": 92, "gpu_xid": 79}
            async with http.post(gpus.make_url("/admin/faults"), json=fault) as response:
                assert response.status == 200
        hot = await asyncio.to_thread(source.read)
        assert (hot.gpus[1].temperature_c, hot.gpus[1].throttle_reasons & 0x60) == (92.0, 0x60)
        assert hot.xids == (XidEvent(second, 79, 100.0),)
        found = verdict.judge(hot.gpus, hot.xids, now=100.0)
        assert [r.split(" (")[0] for r in found.reasons] == [
            "GPU 1",
            f"GPU {second} reported XID 79 0 s ago",
        ]
        assert (await asyncio.to_thread(source.read)).xids == ()  # each event once
    finally:
        await gpus.close()


def test_the_twin_source_names_the_url_it_cannot_read() -> None:
    source = twinsource.TwinSource("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(SourceError, match=r"GET http://127.0.0.1:9/sim/gpus: "):
        source.read()


# The operator's pod, as the API server returns it (snake_case), through the twin's
# workloads and the router's discovery.
def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _rendered_pod() -> dict[str, Any]:
    spec = ModelPoolSpec.model_validate({
        "model": {"name": "llama-3.1-8b", "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                  "catalogName": "llama-3.1-8b"},
        "variants": [{"name": "h100", "gpu": "H100-80GB"}],
    })  # fmt: skip
    decision = variants.plan_pool(spec)[0]
    pool = render.PoolRef(name="p", namespace="ns", uid="u")
    template = render.deployment(pool, spec, decision, replicas=1)["spec"]["template"]
    meta: dict[str, Any] = {
        **template["metadata"],
        "labels": {**template["metadata"]["labels"], "pod-template-hash": "abc"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "p-h100-abc", "controller": True}],
    }
    pod: dict[str, Any] = _snake({"metadata": meta, "spec": template["spec"]})
    return pod | {
        "status": {"phase": "Running", "pod_ip": "127.64.0.9",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def test_the_twin_runs_the_rendered_agent_on_the_simulators_gpus() -> None:
    pod = _rendered_pod()
    ctx = workloads.PodContext(pod_ip="127.64.0.9", node_gpu="H100-80GB")
    server, agent = workloads.launches(pod, ctx)
    assert isinstance(server, workloads.Launch) and isinstance(agent, workloads.Launch)
    assert server.kind == "vllm"
    sim = dict(zip(server.args[1::2], server.args[2::2], strict=False))
    assert sim["--metrics-port"] == str(workloads.SIM_GPU_PORT)  # the agent serves 9400
    assert agent.kind == "gpufleet"
    assert agent.args[:5] == ("gpu-agent", "--host", "127.64.0.9", "--port", "9400")
    assert agent.args[-4:] == ("--source", "twin", "--twin-url", "http://127.64.0.9:9401")
    assert (agent.probe.kind, agent.probe.port, agent.probe.path) == ("http", 9400, "/healthz")


def test_a_pod_without_an_agent_keeps_the_simulators_dcgm_port() -> None:
    pod = _rendered_pod()
    pod["spec"]["containers"] = pod["spec"]["containers"][:1]
    (server,) = workloads.launches(
        pod, workloads.PodContext(pod_ip="127.64.0.9", node_gpu="H100-80GB")
    )
    assert isinstance(server, workloads.Launch)
    assert server.args[server.args.index("--metrics-port") + 1] == str(workloads.DCGM_PORT)


def test_discovery_learns_each_endpoints_agent_from_its_port_name() -> None:
    cfg = router_config.parse(
        {"kubernetes": {"namespace": "ns", "source": "pods"}, "policy": {"pools": ["p"]}}
    )
    pod = _rendered_pod()
    (with_agent,) = discovery.endpoints_from_pods(cfg, [pod])
    assert with_agent.id == "http://127.64.0.9:8000"
    assert with_agent.gpu_health_url == "http://127.64.0.9:9400/health"
    pod["spec"]["containers"] = pod["spec"]["containers"][:1]
    (without,) = discovery.endpoints_from_pods(cfg, [pod])
    assert without.gpu_health_url == ""
    info = discovery.pod_info(_rendered_pod())
    assert info is not None and info.gpu_agent_port == 9400
    slices = [{"ports": [{"name": "http", "port": 8000}],
               "endpoints": [{"addresses": ["127.64.0.9"], "conditions": {"ready": True},
                              "target_ref": {"name": "x"}}]}]  # fmt: skip
    (from_slice,) = discovery.endpoints_from_slices(cfg, slices, {"x": info})
    assert from_slice.gpu_health_url == "http://127.64.0.9:9400/health"
