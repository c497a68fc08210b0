"""Shared fixtures: a real local control plane with KWOK GPU nodes, one per test run.

``cluster`` starts (once per session) a cluster from the binaries that
``gpufleet dev-cluster build`` put in the cache, with its pod runner and Prometheus, and
stops it at the end; set
``GPUFLEET_TEST_CLUSTER=<name>`` to run against an already running dev cluster instead
(it is then left running). ``namespace`` gives each test a fresh namespace.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from gpufleet.devcluster import build, nodes
from gpufleet.devcluster import cluster as clusters

# The session cluster is the full twin: a process per pod and Prometheus. Simulators run
# 10x faster than real time and load their model for 20 simulated (2 wall) seconds, so
# cold starts exist without slowing the suite.
SIM_SPEED = 10.0
LOAD_SECONDS = 20.0


@dataclasses.dataclass
class LocalCluster:
    """A running local cluster as the tests see it."""

    name: str
    handle: clusters.Cluster
    api_client: client.ApiClient
    owned: bool

    @property
    def kubeconfig(self) -> Path:
        return self.handle.kubeconfig

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl; raises ``CalledProcessError`` when ``check``."""
        argv = [str(build.binary_path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(
            argv, input=input, capture_output=True, text=True, check=check, timeout=60
        )


def _missing_binaries() -> list[str]:
    return [c.name for c in build.components() if not build.is_built(c)]


@pytest.fixture(scope="session")
def cluster_handle() -> Iterator[tuple[clusters.Cluster, bool]]:
    missing = _missing_binaries()
    if missing:
        pytest.fail(
            f"dev cluster not built ({', '.join(missing)}): run `gpufleet dev-cluster build` "
            "(`make test` does this first)",
            pytrace=False,
        )
    reuse = os.environ.get("GPUFLEET_TEST_CLUSTER")
    if reuse:
        found = clusters.load(reuse)
        if found is None or not clusters.is_running(found):
            pytest.fail(
                f"GPUFLEET_TEST_CLUSTER={reuse}: no such running dev cluster", pytrace=False
            )
        yield found, False
        return
    name = f"pytest-{os.getpid()}"
    handle = clusters.up(
        name, sim_speed=SIM_SPEED, load_seconds=LOAD_SECONDS, progress=lambda _msg: None
    )
    try:
        yield handle, True
    finally:
        clusters.down(name, progress=lambda _msg: None)


@pytest.fixture(scope="session")
def cluster(cluster_handle: tuple[clusters.Cluster, bool]) -> Iterator[LocalCluster]:
    handle, owned = cluster_handle
    with nodes.api_client(handle.kubeconfig) as api:
        yield LocalCluster(name=handle.name, handle=handle, api_client=api, owned=owned)


def _wait_default_service_account(core: client.CoreV1Api, namespace: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(namespace).items
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"no default ServiceAccount in {namespace} after 30s")


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    core = client.CoreV1Api(cluster.api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"gpufleet.io/test": "true"}}})
    _wait_default_service_account(core, name)
    yield name
    core.delete_namespace(name)
