"""Fixtures of the twin tests: the CRDs (shared with the integration tests) and an
operator running as its least-privilege ServiceAccount, scoped to the test namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LocalCluster
from tests.integration.conftest import crds
from tests.integration.operator_harness import Operator, service_account_kubeconfig

__all__ = ["crds"]


@pytest.fixture(scope="module")
def operator_kubeconfig(
    cluster: LocalCluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("operator") / "operator.kubeconfig"
    return service_account_kubeconfig(cluster.handle, cluster.api_client, path)


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,))
    try:
        yield op.start()
    finally:
        op.stop()
