"""A dev cluster with a fleet of a few hundred KWOK nodes: up, every node usable, down.

No wall-clock assertion (the machines are noisy): ``up`` holds itself to a deadline
that grows with the fleet, so an ``up`` that returns 0 was in time.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gpufleet.devcluster import build, errors, processes, readiness
from gpufleet.devcluster import cluster as clusters
from tests.integration.test_dev_cluster_cli import _processes_of, gpufleet

pytestmark = pytest.mark.integration

GENERATIONS = ("H100-80GB", "A100-40GB", "L40S", "B200")
PER_GENERATION = 50


def _kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    argv = [str(build.binary_path("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout


def _gpu_pod(gpu_product: str) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu-probe", "namespace": "default"},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": gpu_product},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "containers": [{"name": "c", "image": "none", "resources": {
                "limits": {"nvidia.com/gpu": "8"}}}],
        },
    }  # fmt: skip
    return json.dumps(pod)


def test_a_200_node_fleet_comes_up_schedulable_and_down_leaves_nothing(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(
        "nodeGroups:\n"
        + "".join(
            f"- {{name: {g.lower()}, count: {PER_GENERATION}, gpu: {g}, gpusPerNode: 8}}\n"
            for g in GENERATIONS
        )
    )
    name = f"fleet-{os.getpid()}"
    try:
        up = gpufleet("up", "--name", name, "--fleet", str(fleet_file), "--no-prometheus",
                      "--no-workloads")  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert len(up.stderr.splitlines()) < 30, "progress should be a line every few seconds"
        kubeconfig = up.stdout.strip().splitlines()[-1].split("=", 1)[1]
        listed = json.loads(_kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
        states = [readiness.state_of(n) for n in listed]
        assert len(listed) == PER_GENERATION * len(GENERATIONS)
        assert set(states) == {readiness.NodeState.SCHEDULABLE}
        # The scheduler agrees: a pod asking for a whole B200 node is bound to one.
        _kubectl(kubeconfig, "apply", "-f", "-", stdin=_gpu_pod("NVIDIA-B200"))
        _kubectl(kubeconfig, "wait", "--for=condition=PodScheduled", "--timeout=30s",
                 "pod/gpu-probe")  # fmt: skip
        node = _kubectl(kubeconfig, "get", "pod", "gpu-probe", "-o", "jsonpath={.spec.nodeName}")
        assert node.startswith("kwok-b200-")
        started = clusters.load(name)
        assert started is not None
        assert gpufleet("down", "--name", name, timeout=60).returncode == 0
        assert not _processes_of(name), "down left processes behind"
        assert not any(processes.alive(p) for p in started.procs)
    finally:
        gpufleet("down", "--name", name, timeout=60)


def test_a_fleet_that_misses_its_deadline_stops_the_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(readiness, "ready_timeout", lambda _count: 0.0)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text("nodeGroups:\n- {name: h100, count: 20, gpu: H100-80GB}\n")
    name = f"late-{os.getpid()}"
    try:
        with pytest.raises(errors.StartFailed, match="KWOK nodes") as info:
            clusters.up(name, fleet_file=str(fleet_file), prometheus=False, workloads=False,
                        progress=lambda _m: None)  # fmt: skip
        assert "kwok-h100-" in str(info.value) or "created in" in str(info.value)
        assert not _processes_of(name), "processes of the failed cluster left running"
        assert clusters.load(name) is None
    finally:
        clusters.down(name, progress=lambda _m: None)
