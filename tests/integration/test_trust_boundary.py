"""The trust boundary on the real control plane: the API server refuses the spellings its
CEL rule sees, the operator (as its least-privilege ServiceAccount) leaves a pool that
asks for more Degraded, naming the field, with no Deployment, and gives every pool a
NetworkPolicy the API server accepts, admitting the routers of the policies that route
it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller.modelpool import netpolicy, render
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


def _network_policy(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any] | None:
    api = client.NetworkingV1Api(cluster.api_client)
    try:
        found = api.read_namespaced_network_policy(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], cluster.api_client.sanitize_for_serialization(found))


def _routers(policy: dict[str, Any] | None) -> list[str] | None:
    for rule in (policy or {}).get("spec", {}).get("ingress", []):
        for peer in rule["from"]:
            for term in peer.get("podSelector", {}).get("matchExpressions", []):
                if term["key"] == labels.ROUTING_POLICY:
                    return list(term["values"])
    return None


def test_the_api_server_accepts_every_rendered_network_policy(
    cluster: LocalCluster, namespace: str
) -> None:
    spec = ModelPoolSpec.model_validate(body("p", serving={}, extra=[])["spec"])
    ref = render.PoolRef(name="p", namespace=namespace, uid="00000000-0000-0000-0000-000000000001")
    scraper = netpolicy.Scraper("monitoring", {"app.kubernetes.io/name": "prometheus"})
    for routers in [(), ("rp",), ("a", "b")]:
        rendered = netpolicy.pool_policy(ref, spec, routers=routers, scraper=scraper)
        # A server-side dry run: the API server validates the whole object, stores nothing.
        cluster.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace,
                        "-f", "-", input=json.dumps(rendered))  # fmt: skip


@pytest.mark.timeout(90)
def test_the_operator_admits_to_a_pool_only_the_routers_that_route_it(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _create(cluster, namespace, body("p", serving={}, extra=[]))
    created = until("the pool's NetworkPolicy", lambda: _network_policy(cluster, namespace, "p"),
                    timeout=30)  # fmt: skip
    assert _routers(created) is None  # no policy routes it yet: no router rule at all
    # Sidecar mode: no router Deployment to run; the policy routes the pool all the same.
    spec = {"pools": ["p"], "router": {"mode": "sidecar"}}
    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy",
              "metadata": {"name": "rp"}, "spec": spec}  # fmt: skip
    api = client.CustomObjectsApi(cluster.api_client)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "routingpolicies", policy)

    def admitted() -> bool:
        return _routers(_network_policy(cluster, namespace, "p")) == ["rp"]

    until("the policy's routers admitted", admitted, timeout=30)
