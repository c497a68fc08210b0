"""Fixtures of the twin tests: the CRDs (shared with the integration tests) and an
operator running as its least-privilege ServiceAccount, scoped to the test namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import crds, operator_kubeconfig
from tests.integration.operator_harness import Operator

__all__ = ["crds", "operator_kubeconfig"]


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    # Routers discover pods: the twin's loopback pod IPs never reach an EndpointSlice.
    op = Operator(
        operator_kubeconfig,
        tmp_path / "operator.log",
        namespaces=(namespace,),
        extra=("--router-discovery", "pods"),
    )
    try:
        yield op.start()
    finally:
        op.stop()
