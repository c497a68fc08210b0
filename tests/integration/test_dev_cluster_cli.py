"""``gpufleet dev-cluster`` as a user runs it: up (with and without Prometheus), status,
down, bad input, side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpufleet.devcluster import build, components, errors, processes
from gpufleet.devcluster import cluster as clusters
from tests.conftest import LocalCluster

pytestmark = pytest.mark.integration


def gpufleet(*args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gpufleet.cli", "dev-cluster", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _processes_of(name: str) -> set[int]:
    """Pids whose command line mentions cluster ``name``'s directory (or its etcd name)."""
    marker = str(clusters.layout_for(name).root).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker + b"/" in cmdline or b"--name=" + name.encode() + b"\0" in cmdline:
            found.add(int(entry.name))
    return found


def test_unknown_gpu_in_fleet_fails_fast_and_starts_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("nodeGroups:\n- {name: x, count: 1, gpu: V100}\n")
    result = gpufleet("up", "--name", f"bad-{os.getpid()}", "--fleet", str(fleet), timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "nodeGroups[0] (x).gpu" in result.stderr and "H100-80GB" in result.stderr
    assert not _processes_of(f"bad-{os.getpid()}"), "a failed up left processes behind"
    assert clusters.load(f"bad-{os.getpid()}") is None


def test_down_of_a_cluster_that_is_not_running_says_so() -> None:
    result = gpufleet("down", "--name", "never-started", timeout=30)
    assert result.returncode == 0
    assert "'never-started' is not running" in result.stderr


def test_second_cluster_runs_beside_the_first_and_down_leaves_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "nodeGroups:\n- {name: a100, count: 1, gpu: A100-40GB}\n- {name: cpu, count: 1}\n"
    )
    name = f"side-{os.getpid()}"
    try:
        up = gpufleet("up", "--name", name, "--fleet", str(fleet))
        assert up.returncode == 0, up.stderr
        kubeconfig, prometheus_url = up.stdout.strip().splitlines()[-2:]
        assert kubeconfig.startswith("export KUBECONFIG=")
        second = clusters.load(name)
        assert second is not None and clusters.is_running(second)
        assert prometheus_url == f"export PROMETHEUS_URL={second.prometheus_url}"
        assert "prometheus" in {p.name for p in second.procs}
        assert second.ports.apiserver != cluster.handle.ports.apiserver
        status = gpufleet("status", "--name", name, timeout=30)
        assert f"cluster '{name}': running" in status.stdout
        assert f"prometheus {second.prometheus_url}" in status.stdout
        kubectl = str(build.binary_path("kubectl"))
        nodes = subprocess.run(
            [kubectl, f"--kubeconfig={kubeconfig.split('=', 1)[1]}", "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
        assert sorted(nodes) == ["node/kwok-a100-0", "node/kwok-cpu-0"]
        assert {p.pid for p in second.procs} == _processes_of(name)
        down = gpufleet("down", "--name", name, timeout=60)
        assert down.returncode == 0
        assert not _processes_of(name), "down left processes behind"
        assert not any(processes.alive(p) for p in second.procs)
    finally:
        gpufleet("down", "--name", name, timeout=60)
    assert all(processes.alive(p) for p in cluster.handle.procs), "the first cluster was disturbed"


def test_no_prometheus_starts_none_and_prints_no_url(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("nodeGroups:\n- {name: cpu, count: 1}\n")
    name = f"bare-{os.getpid()}"
    try:
        up = gpufleet("up", "--name", name, "--fleet", str(fleet), "--no-prometheus")
        assert up.returncode == 0, up.stderr
        lines = up.stdout.strip().splitlines()
        assert lines[-1].startswith("export KUBECONFIG=")
        assert not [line for line in lines if "PROMETHEUS_URL" in line]
        bare = clusters.load(name)
        assert bare is not None and clusters.is_running(bare)
        assert bare.prometheus_url is None
        assert "prometheus" not in {p.name for p in bare.procs}
        assert {p.pid for p in bare.procs} == _processes_of(name), "nothing unrecorded"
        status = gpufleet("status", "--name", name, timeout=30)
        assert f"cluster '{name}': running" in status.stdout
        assert "prometheus" not in status.stdout
    finally:
        gpufleet("down", "--name", name, timeout=60)


def test_failed_up_stops_what_it_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """kube-scheduler refuses to start: etcd, the API server and the controller-manager
    that were already running are stopped, and the error carries the scheduler's log."""
    real = components.scheduler

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        return [*real(*args, **kwargs), "--no-such-flag"]

    monkeypatch.setattr(components, "scheduler", broken)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("nodeGroups:\n- {name: cpu, count: 1}\n")
    name = f"broken-{os.getpid()}"
    try:
        with pytest.raises(errors.StartFailed) as info:
            clusters.up(name, fleet_file=str(fleet), progress=lambda _m: None)
        assert "kube-scheduler exited during start-up" in str(info.value)
        assert "no-such-flag" in str(info.value), "the log tail says why"
        assert not _processes_of(name), "processes of the failed cluster left running"
        assert clusters.load(name) is None
    finally:
        clusters.down(name, progress=lambda _m: None)
