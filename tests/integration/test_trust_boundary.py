"""The trust boundary on the real control plane: the API server refuses the spellings its
CEL rule sees, and the operator (as its least-privilege ServiceAccount) leaves a pool
that asks for more Degraded, naming the field, with no Deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, PLURAL, VERSION, Operator, get_pool
from tests.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,))
    try:
        yield op.start()
    finally:
        op.stop()


def body(name: str, *, serving: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    variant = {"name": "h100", "gpu": "H100-80GB", "minReplicas": 0, "extraArgs": extra}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "m", "source": "hf://org/m", "catalogName": "llama-3.1-8b"},
            "variants": [variant],
            "serving": serving,
        },
    }


def _create(cluster: LocalCluster, namespace: str, obj: dict[str, Any]) -> None:
    api = client.CustomObjectsApi(cluster.api_client)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)


@pytest.mark.parametrize(
    "extra",
    [
        ["-tp", "8"],
        ["--tensor_parallel_size=8"],
        ["8"],
        ["--enforce-eager", "--tensor-par", "8"],  # an abbreviation is no tuning flag
        ["--kv-events-config", "{}"],  # sends prompt token ids out of the pod
        ["--scheduler-cls=evil.Scheduler"],  # an import name
    ],
)
def test_api_server_refuses_flags_beyond_tuning(
    cluster: LocalCluster, crds: list[str], namespace: str, extra: list[str]
) -> None:
    with pytest.raises(client.ApiException) as err:
        _create(cluster, namespace, body("p", serving={}, extra=extra))
    assert err.value.status == 422 and "extraArgs" in err.value.body


@pytest.mark.parametrize(
    ("serving", "extra", "field"),
    [
        ({"image": "evil.io/miner:1"}, [], "spec.serving.image"),
        ({"trustRemoteCode": True}, [], "spec.serving.trustRemoteCode"),
    ],
)
def test_operator_refuses_and_names_the_field(
    cluster: LocalCluster, namespace: str, operator: Operator,
    serving: dict[str, Any], extra: list[str], field: str,
) -> None:  # fmt: skip
    _create(cluster, namespace, body("p", serving=serving, extra=extra))

    def degraded() -> str:
        for c in (get_pool(cluster, namespace, "p").get("status") or {}).get("conditions", []):
            if c["type"] == "Degraded" and c["status"] == "True":
                return str(c["message"])
        return ""

    message = until("the pool Degraded", degraded, timeout=30)
    assert field in message
    apps = client.AppsV1Api(cluster.api_client)
    assert apps.list_namespaced_deployment(namespace).items == []
