"""The operator keeps working when the API server restarts under it.

On a dedicated small cluster (restarting the session's API server would disturb other
tests): the operator reconciles a pool, kube-apiserver is stopped and started again,
and a pool created afterwards must still be reconciled — the watches resumed — while
the liveness endpoint reports healthy.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from gpufleet.devcluster import build, nodes
from gpufleet.devcluster import cluster as clusters
from tests.integration.operator_harness import (
    GROUP,
    PLURAL,
    VERSION,
    Operator,
    condition,
    running,
)
from tests.waiting import until

pytestmark = pytest.mark.integration
CRD_DIR = Path(__file__).parents[2] / "crds"
FLEET = "nodeGroups:\n- {name: h100, count: 1, gpu: H100-80GB, gpusPerNode: 8}\n"


def _pool(name: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "m", "source": "hf://t/m", "catalogName": "llama-3.1-8b",
                      "maxModelLen": 8192},
            "variants": [{"name": "h100", "gpu": "H100-80GB", "minReplicas": 1}],
        },
    }  # fmt: skip


def _ready(api: client.CustomObjectsApi, name: str) -> bool:
    try:
        pool = api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    except (client.ApiException, OSError):
        return False
    return condition(pool, "Ready").get("status") == "True"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and "watch" in json.loads(response.read())
    except OSError:
        return False


@pytest.mark.timeout(240)
def test_operator_resumes_watching_after_apiserver_restart(
    tmp_path: Path,
) -> None:
    name = f"oprestart-{os.getpid()}"
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(FLEET)
    handle = clusters.up(name, fleet_file=str(fleet_file), workloads=False, prometheus=False,
                         progress=lambda _m: None)  # fmt: skip
    try:
        base = [str(build.binary_path("kubectl")), f"--kubeconfig={handle.kubeconfig}"]
        subprocess.run([*base, "apply", "--server-side", "-f", str(CRD_DIR)], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        subprocess.run([*base, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/modelpools.gpufleet.io"], check=True, capture_output=True,
                       timeout=90)  # fmt: skip
        op = Operator(
            handle.kubeconfig,
            tmp_path / "operator.log",
            extra=("--watch-check-seconds", "2", "--watch-grace-seconds", "20"),
        )
        with nodes.api_client(handle.kubeconfig) as api, running(op):
            pools = client.CustomObjectsApi(api)
            pools.create_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, _pool("before")
            )
            until("pool Ready before the restart", lambda: _ready(pools, "before"), timeout=60)
            handle = clusters.restart_component(handle, "kube-apiserver", progress=lambda _m: None)
            until("API server back", lambda: _ready(pools, "before"), timeout=60)
            pools.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _pool("after"))
            until(
                "pool created after the restart Ready", lambda: _ready(pools, "after"), timeout=90
            )
            until("liveness healthy", lambda: _healthy(op.health_url), timeout=30)
            assert op.proc is not None and op.proc.poll() is None
    finally:
        clusters.down(name, progress=lambda _m: None)
