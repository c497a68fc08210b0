"""Integration fixtures of gpufleet's own APIs: the CRDs, installed once per session.

``crds`` applies ``crds/`` server-side (idempotent, so a reused dev cluster is fine) and
waits until the API server reports every CRD Established.
"""

from __future__ import annotations

import pathlib

import pytest

from gpufleet.api import crd
from tests.conftest import LocalCluster
from tests.integration.operator_harness import service_account_kubeconfig

CRD_DIR = pathlib.Path(__file__).parents[2] / "crds"


@pytest.fixture(scope="session")
def crds(cluster: LocalCluster) -> list[str]:
    """Names of the installed gpufleet CRDs."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    names = [kind.crd_name for kind in crd.KINDS]
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names)
    )
    return names


@pytest.fixture(scope="module")
def operator_kubeconfig(
    cluster: LocalCluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> pathlib.Path:
    """A kubeconfig of the operator's least-privilege ServiceAccount (its RBAC applied)."""
    path = tmp_path_factory.mktemp("operator") / "operator.kubeconfig"
    return service_account_kubeconfig(cluster.handle, cluster.api_client, path)
