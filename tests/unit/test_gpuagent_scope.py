"""Each pod's GPU health agent judges its own pod's GPUs only.

NVML shows the agent sidecar every GPU of the node; the model server lists the pod's
in a file (``gpufleet.podgpus``). Two pods share one four-GPU node here, read
through a fake pynvml: a hot GPU and an XID of pod B must not drain pod A.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest, parser

from gpufleet import podgpus
from gpufleet.devcluster import workloads
from gpufleet.gpuagent import app, exporter, scope
from gpufleet.gpuagent.nvml import NvmlSource
from gpufleet.gpuagent.readings import Snapshot, XidEvent
from gpufleet.sim import command as sim_command
from tests.unit.test_gpuagent import FakeNvml, _Event, _rendered_pod

POD_A = frozenset({"GPU-h0", "GPU-h1"})
POD_B = frozenset({"GPU-h2", "GPU-h3"})


class NodeNvml(FakeNvml):
    """A four-GPU node: pod B's GPU 3 at 95 °C with an XID 79; no ECC errors anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.temperature = {"h0": 60, "h1": 61, "h2": 62, "h3": 95}
        self.events = [_Event("h3", 79)]

    def nvmlDeviceGetCount(self) -> int:
        return 4

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        return 0


def _agent(listed: Path | None) -> app.AgentState:
    return app.AgentState(app.AgentSettings(hostname="node-1", gpu_uuids_file=listed))


def _listing(tmp_path: Path, name: str, uuids: frozenset[str]) -> Path:
    path = tmp_path / name
    podgpus.write(path, sorted(uuids), writer="test")
    return path


def _dcgm_uuids(state: app.AgentState) -> set[str]:
    collector = exporter.AgentCollector(
        hostname="node-1", read=lambda: (state.gpus, state.verdict, state.read_errors)
    )
    text = generate_latest(exporter.registry(collector)).decode()
    return {
        s.labels["UUID"]
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "DCGM_FI_DEV_GPU_TEMP"
    }


def test_a_hot_gpu_of_pod_b_does_not_drain_pod_a(tmp_path: Path) -> None:
    snapshot = NvmlSource(NodeNvml(), clock=lambda: 100.0).read()
    assert len(snapshot.gpus) == 4  # what NVML shows each sidecar
    agents = {
        "a": _agent(_listing(tmp_path, "a", POD_A)),
        "b": _agent(_listing(tmp_path, "b", POD_B)),
    }
    for state in agents.values():
        app.take(state, snapshot, 100.0)
    assert app.health_body(agents["a"])[0] == 200
    assert app.health_body(agents["a"])[1]["healthy"] is True
    assert app.health_body(agents["a"])[1]["gpus"] == 2
    assert _dcgm_uuids(agents["a"]) == set(POD_A)  # the other pod's GPUs are not exported
    status, body = app.health_body(agents["b"])
    assert (status, body["gpus"]) == (503, 2)
    assert body["reasons"] == [
        "GPU 3 (GPU-h3) at 95 °C (limit 85)",
        "GPU GPU-h3 reported XID 79 0 s ago (held 300 s)",
    ]
    assert _dcgm_uuids(agents["b"]) == set(POD_B)


def test_without_a_list_the_agent_judges_every_gpu_it_reads() -> None:
    state = _agent(None)
    app.take(state, NvmlSource(NodeNvml(), clock=lambda: 1.0).read(), 1.0)
    assert (app.health_body(state)[0], state.verdict and state.verdict.gpus) == (503, 4)


def test_until_the_server_lists_its_gpus_nothing_is_judged_or_exported(tmp_path: Path) -> None:
    listed = tmp_path / "gpu-uuids"
    state = _agent(listed)
    app.take(state, NvmlSource(NodeNvml(), clock=lambda: 5.0).read(), 5.0)
    status, body = app.health_body(state)
    assert (status, body["healthy"], body["gpus"]) == (200, None, 0)
    assert body["error"] == (
        f"waiting for the model server to list its GPUs in {listed} (gpufleet worker writes it)"
    )
    assert (_dcgm_uuids(state), state.read_errors) == (set(), 0)
    listed.write_text("# written, but no GPU yet\n\n")
    app.take(state, Snapshot(gpus=()), 6.0)
    assert app.health_body(state)[1]["healthy"] is None


def test_an_xid_seen_before_the_list_is_judged_once_it_is_only_for_its_pod(
    tmp_path: Path,
) -> None:
    """Events NVML reports once are kept while waiting; then each pod gets its own."""
    source = NvmlSource(NodeNvml(), clock=lambda: 10.0)
    first = source.read()  # XID 79 on pod B's GPU 3, before any list exists
    paths = {"a": tmp_path / "a", "b": tmp_path / "b"}
    agents = {k: _agent(p) for k, p in paths.items()}
    for state in agents.values():
        app.take(state, first, 10.0)
    podgpus.write(paths["a"], POD_A, writer="test")
    podgpus.write(paths["b"], POD_B, writer="test")
    later = source.read()
    assert later.xids == ()
    cool = Snapshot(gpus=tuple(dataclasses.replace(g, temperature_c=50.0) for g in later.gpus))
    for state in agents.values():
        app.take(state, cool, 20.0)
    assert app.health_body(agents["a"])[0] == 200
    status, body = app.health_body(agents["b"])
    assert (status, body["reasons"]) == (503, ["GPU GPU-h3 reported XID 79 10 s ago (held 300 s)"])


def test_a_listed_gpu_the_agent_cannot_read_is_a_read_error_not_a_verdict(
    tmp_path: Path,
) -> None:
    state = _agent(_listing(tmp_path, "a", frozenset({"GPU-h0", "GPU-gone"})))
    app.take(state, NvmlSource(NodeNvml()).read(), 1.0)
    status, body = app.health_body(state)
    assert (status, body["healthy"], state.read_errors) == (200, None, 1)
    assert body["error"].endswith("lists GPU(s) this agent cannot read: GPU-gone")


def test_the_list_ignores_comments_and_blank_lines() -> None:
    text = podgpus.render(["GPU-1", "MIG-2"], writer="w")
    assert podgpus.parse(text + "\n  \n# note\n") == {"GPU-1", "MIG-2"}
    found = scope.scoped(
        Snapshot(gpus=(), xids=(XidEvent("GPU-1", 79, 0.0), XidEvent("GPU-9", 79, 0.0))),
        frozenset({"GPU-1"}),
    )
    assert (found.gpus, found.missing) == ((), ("GPU-1",))


# The running agent: its loop reads the list each interval, so /health turns from
# "not judging" to the pod's verdict as soon as the worker writes it.
async def test_the_running_agent_judges_once_the_list_appears(tmp_path: Path) -> None:
    listed = tmp_path / "gpu-uuids"
    settings = app.AgentSettings(interval_seconds=0.02, gpu_uuids_file=listed)
    agent = TestClient(TestServer(app.create_app(settings, lambda: NvmlSource(NodeNvml()))))
    await agent.start_server()
    try:
        assert (await _health(agent))[1]["healthy"] is None
        podgpus.write(listed, POD_A, writer="test")
        status, body = await _until_judged(agent)
        assert (status, body["healthy"], body["gpus"]) == (200, True, 2)
        podgpus.write(listed, POD_B, writer="test")  # (a list is per pod; this proves it is read)
        status, body = await _until_judged(agent, status=503)
        assert body["reasons"][0] == "GPU 3 (GPU-h3) at 95 °C (limit 85)"
    finally:
        await agent.close()


async def _health(agent: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    async with agent.get("/health") as response:
        return response.status, json.loads(await response.text())


async def _until_judged(
    agent: TestClient[Any, Any], *, status: int = 200
) -> tuple[int, dict[str, Any]]:
    for _ in range(100):
        found = await _health(agent)
        if found[1]["healthy"] is not None and found[0] == status:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no verdict with status {status}: {found}")


# The twin: the simulator standing in for the worker lists its GPUs at the path the pod
# names, and the agent reads that path — the same file through both containers' mounts.
def test_the_twin_lists_the_simulators_gpus_where_the_agent_reads_them(tmp_path: Path) -> None:
    pod = _rendered_pod()
    sim, agent = workloads.launches(
        pod, workloads.PodContext(pod_ip="127.64.0.9", node_gpu="H100-80GB")
    )
    assert isinstance(sim, workloads.Launch) and isinstance(agent, workloads.Launch)
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    host = str(tmp_path / "volumes" / "gpu-uuids")

    def file_of(launch: workloads.Launch) -> str:
        mounts = workloads.MountMap(
            tuple((m["mount_path"], host) for m in containers[launch.container]["volume_mounts"]
                  if m["name"] == "gpu-uuids")
        )  # fmt: skip
        args = workloads.mapped(launch, mounts).args
        return args[args.index("--gpu-uuids-file") + 1]

    assert file_of(sim) == file_of(agent) == f"{host}/gpu-uuids"
    args = sim_command.settings_from(_sim_args(sim.args[1:]))
    listed = Path(file_of(sim))
    listed.parent.mkdir(parents=True)
    sim_command.list_gpus(listed, args)
    assert podgpus.read(listed) == set(args.gpu_uuids())


def _sim_args(argv: tuple[str, ...]) -> argparse.Namespace:
    parse = argparse.ArgumentParser()
    sim_command.add_replica_arguments(parse)
    sim_command.add_fault_arguments(parse)
    return parse.parse_args(list(argv))


def test_simulated_gpu_uuids_are_stable_per_simulator_and_distinct_between_them() -> None:
    a = _sim_args(("--gpu", "H100-80GB", "--model", "llama-3.1-8b", "--tp", "2",
                   "--host", "127.64.0.9", "--port", "8000"))  # fmt: skip
    b = _sim_args(("--gpu", "H100-80GB", "--model", "llama-3.1-8b", "--tp", "2",
                   "--host", "127.64.0.10", "--port", "8000"))  # fmt: skip
    first = sim_command.settings_from(a).gpu_uuids()
    assert first == sim_command.settings_from(a).gpu_uuids()  # a restarted pod keeps them
    assert len(set(first)) == 2
    assert not set(first) & set(sim_command.settings_from(b).gpu_uuids())
