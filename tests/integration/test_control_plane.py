"""The local control plane is real: the scheduler, controllers, RBAC and schemas decide.

Each test talks to the session's cluster (see ``tests/conftest.py``): real etcd,
kube-apiserver, kube-controller-manager and kube-scheduler, with KWOK GPU nodes.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufleet.hardware import catalog
from tests.conftest import LocalCluster
from tests.waiting import until as _until

pytestmark = pytest.mark.integration

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _gpu_pod_spec(*, gpus: int, product: str | None, tolerate: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "worker",
                "image": "registry.invalid/vllm:test",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
    }
    if tolerate:
        spec["tolerations"] = [GPU_TOLERATION]
    if product is not None:
        term = {
            "matchExpressions": [
                {"key": catalog.PRODUCT_LABEL, "operator": "In", "values": [product]}
            ]
        }
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
            }
        }
    return spec


def _deployment(name: str, pod_spec: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def _node_labels(core: client.CoreV1Api, name: str) -> dict[str, str]:
    return dict(core.read_node(name).metadata.labels)


def test_gpu_deployment_lands_on_its_generation_and_becomes_ready(
    cluster: LocalCluster, namespace: str
) -> None:
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)
    product = catalog.get("H100-80GB").primary_product
    apps.create_namespaced_deployment(
        namespace, _deployment("h100", _gpu_pod_spec(gpus=4, product=product))
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("h100", namespace).status
        return bool(status.available_replicas == 1)

    _until("Deployment h100 available", available)
    (pod,) = _pods(core, namespace, "h100")
    assert pod.metadata.owner_references[0].kind == "ReplicaSet", (
        "made by the real controller-manager"
    )
    labels = _node_labels(core, pod.spec.node_name)
    assert catalog.identify(labels) == catalog.get("H100-80GB")
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    assert ipaddress.ip_address(pod.status.pod_ip).is_loopback


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    cluster: LocalCluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    body = {"metadata": {"name": "huge"}, "spec": _gpu_pod_spec(gpus=16, product=None)}
    core.create_namespaced_pod(namespace, body)

    def failed_scheduling() -> list[client.CoreV1Event]:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=huge"
        ).items
        return [e for e in events if e.reason == "FailedScheduling"]

    events = _until("a FailedScheduling event", failed_scheduling)
    assert "Insufficient nvidia.com/gpu" in events[0].message
    pod = core.read_namespaced_pod("huge", namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_pods_without_the_gpu_toleration_never_land_on_gpu_nodes(
    cluster: LocalCluster, namespace: str
) -> None:
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)
    spec = {"containers": [{"name": "web", "image": "registry.invalid/web:test"}]}
    apps.create_namespaced_deployment(namespace, _deployment("cpu", spec, replicas=6))
    scheduled = _until(
        "6 pods scheduled",
        lambda: len([p for p in _pods(core, namespace, "cpu") if p.spec.node_name]) == 6,
    )
    assert scheduled
    for pod in _pods(core, namespace, "cpu"):
        labels = _node_labels(core, pod.spec.node_name)
        assert catalog.PRODUCT_LABEL not in labels, (
            f"{pod.metadata.name} on GPU node {pod.spec.node_name}"
        )

    pinned = {
        "metadata": {"name": "pinned"},
        "spec": _gpu_pod_spec(gpus=1, product=catalog.get("B200").primary_product, tolerate=False),
    }
    core.create_namespaced_pod(namespace, pinned)
    events = _until(
        "FailedScheduling for the untolerated pod",
        lambda: [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=pinned"
            ).items
            if e.reason == "FailedScheduling"
        ],
    )
    assert "untolerated taint" in events[0].message


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.gpufleet.io"},
    "spec": {
        "group": "test.gpufleet.io",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["gpus"],
                                "properties": {
                                    "gpus": {"type": "integer", "minimum": 1, "maximum": 8}
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_is_enforced_by_the_api_server(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(WIDGET_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.gpufleet.io", "--timeout=30s"
    )
    custom = client.CustomObjectsApi(cluster.api_client)

    def widget(gpus: object) -> dict[str, Any]:
        return {
            "apiVersion": "test.gpufleet.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"gpus": gpus},
        }

    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(
            "test.gpufleet.io", "v1", namespace, "widgets", widget(16)
        )
    assert info.value.status == 422
    assert "spec.gpus" in info.value.body
    bad = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(widget("four")), check=False
    )
    assert bad.returncode != 0
    assert "spec.gpus" in bad.stderr
    created = custom.create_namespaced_custom_object(
        "test.gpufleet.io", "v1", namespace, "widgets", widget(4)
    )
    assert created["spec"]["gpus"] == 4


def test_kubectl_shows_the_fleet_with_gpu_labels(cluster: LocalCluster) -> None:
    out = cluster.kubectl("get", "nodes", "-L", catalog.PRODUCT_LABEL, "--no-headers").stdout
    products = {line.split()[-1] for line in out.splitlines()}
    for gpu in ("B200", "H100-80GB", "A100-80GB", "A100-40GB", "L40S"):
        assert catalog.get(gpu).primary_product in products
    assert all(" Ready " in line for line in out.splitlines())


def test_rbac_is_enforced(cluster: LocalCluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    result = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "nodes",
        f"--as=system:serviceaccount:{namespace}:nobody",
        check=False,
    )
    assert result.stdout.strip() == "no"
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    )
    assert token.status.token.count(".") == 2, "service-account tokens are signed JWTs"
