"""The operator on the real local control plane, running as its least-privilege ServiceAccount.

Each test starts ``gpufleet operator`` (one test: ``kopf run -m gpufleet.controller.handlers``)
scoped to the test's namespace, with a 2 s reconcile interval, and drives it through
the API server as a user would: apply ModelPools, edit and delete children, kill the
operator, add nodes. The real scheduler places the pods and KWOK makes them Ready.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpufleet.devcluster import fleet, nodes
from gpufleet.hardware import catalog
from gpufleet.planning import get_model, plan_variant
from tests.conftest import LocalCluster
from tests.integration.operator_harness import (
    GROUP,
    PLURAL,
    VERSION,
    Operator,
    condition,
    get_pool,
    running,
)
from tests.waiting import until

pytestmark = pytest.mark.integration

POOL_LABEL = "gpufleet.io/pool"
TP_LABEL = "gpufleet.io/tensor-parallel-size"


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,))
    try:
        yield op
    finally:
        op.stop()


def pool_body(
    name: str,
    variants: list[dict[str, Any]],
    *,
    catalog_name: str = "llama-3.1-70b",
    max_model_len: int = 8192,
    secret: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": f"test/{catalog_name}",
            "source": f"hf://test/{catalog_name}",
            "catalogName": catalog_name,
            "maxModelLen": max_model_len,
        },
        "variants": variants,
    }
    if secret is not None:
        spec["hubTokenSecretRef"] = {"name": secret, "key": "token"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def _custom(cluster: LocalCluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def create_pool(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> None:
    _custom(cluster).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def patch_spec(cluster: LocalCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    _custom(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def deployments(cluster: LocalCluster, namespace: str, pool: str) -> dict[str, client.V1Deployment]:
    apps = client.AppsV1Api(cluster.api_client)
    found = apps.list_namespaced_deployment(namespace, label_selector=f"{POOL_LABEL}={pool}")
    return {d.metadata.name: d for d in found.items}


def pods(cluster: LocalCluster, namespace: str, pool: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(cluster.api_client)
    return list(core.list_namespaced_pod(namespace, label_selector=f"{POOL_LABEL}={pool}").items)


def ready_pool(
    cluster: LocalCluster, namespace: str, name: str, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pool = get_pool(cluster, namespace, name)
        ready = condition(pool, "Ready").get("status") == "True"
        current = (pool.get("status") or {}).get("observedGeneration") == pool["metadata"][
            "generation"
        ]
        return pool if ready and current else None

    result: dict[str, Any] = until(f"ModelPool {name} Ready", probe, timeout=timeout)
    return result


def vllm_args(deployment: client.V1Deployment) -> list[str]:
    return list(deployment.spec.template.spec.containers[0].args)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def secret(cluster: LocalCluster, namespace: str, name: str) -> None:
    client.CoreV1Api(cluster.api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": name}, "stringData": {"token": "hf_test"}}
    )


MIXED = [
    {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1},
    {"name": "a100", "gpu": "A100-40GB", "minReplicas": 1},
]


def test_mixed_generation_pool_gets_planned_tp_placement_and_ready_status(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    secret(cluster, namespace, "hf-token")
    create_pool(cluster, namespace, pool_body("llama", MIXED, secret="hf-token"))
    with running(operator):
        pool = ready_pool(cluster, namespace, "llama")
        model = get_model("llama-3.1-70b")
        node_api = client.CoreV1Api(cluster.api_client)
        by_variant = {v["name"]: v for v in pool["status"]["variants"]}
        found = deployments(cluster, namespace, "llama")
        assert set(found) == {"llama-h100", "llama-a100"}
        for variant in MIXED:
            plan = plan_variant(model, catalog.get(variant["gpu"]), max_model_len=8192)
            dep = found[f"llama-{variant['name']}"]
            args = vllm_args(dep)
            tp = str(plan.tensor_parallel_size)
            assert flag(args, "--tensor-parallel-size") == tp
            assert dep.spec.template.metadata.labels[TP_LABEL] == tp
            limits = dep.spec.template.spec.containers[0].resources.limits
            assert limits["nvidia.com/gpu"] == tp
            assert dep.metadata.owner_references[0].uid == pool["metadata"]["uid"]
            status = by_variant[variant["name"]]
            assert status["tensorParallelSize"] == plan.tensor_parallel_size
            assert status["kvCacheTokens"] == plan.kv_cache_tokens
            assert (status["desiredReplicas"], status["readyReplicas"]) == (1, 1)
            placed = [
                p
                for p in pods(cluster, namespace, "llama")
                if p.metadata.labels["gpufleet.io/variant"] == variant["name"]
            ]
            assert placed, f"no pods for {variant['name']}"
            for pod in placed:
                node = node_api.read_node(pod.spec.node_name)
                assert catalog.identify(node.metadata.labels).name == variant["gpu"]
        assert (
            plan_variant(model, catalog.get("H100-80GB"), max_model_len=8192).tensor_parallel_size
            != plan_variant(
                model, catalog.get("A100-40GB"), max_model_len=8192
            ).tensor_parallel_size
        )
        core = client.CoreV1Api(cluster.api_client)
        assert core.read_namespaced_service("llama", namespace).spec.selector[POOL_LABEL] == "llama"
        client.PolicyV1Api(cluster.api_client).read_namespaced_pod_disruption_budget(
            "llama", namespace
        )
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=ModelPool"
        )
        assert any(e.reason == "AllVariantsReady" for e in events.items)

        # A reconcile that changes nothing writes nothing: several intervals, no new versions.
        def versions() -> dict[str, str]:
            out = {
                d.metadata.name: d.metadata.resource_version
                for d in deployments(cluster, namespace, "llama").values()
            }
            return out | {
                "pool": get_pool(cluster, namespace, "llama")["metadata"]["resourceVersion"]
            }

        time.sleep(1.0)
        before = versions()
        time.sleep(3 * operator.resync_seconds + 1)
        assert versions() == before

        import urllib.request

        with urllib.request.urlopen(operator.health_url, timeout=10) as response:
            assert response.status == 200
            assert "watch" in json.loads(response.read())


def test_drift_spec_change_variant_removal_and_deletion(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    apps = client.AppsV1Api(cluster.api_client)
    create_pool(cluster, namespace, pool_body("drift", copy.deepcopy(MIXED)))
    with running(operator):
        ready_pool(cluster, namespace, "drift")
        name = "drift-h100"
        # Edited out of band (another field manager): the operator puts its intent back.
        apps.patch_namespaced_deployment(
            name, namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "evil:1"}]}}}},
        )  # fmt: skip
        until(
            "edited image restored",
            lambda: (
                deployments(cluster, namespace, "drift")[name]
                .spec.template.spec.containers[0]
                .image
                != "evil:1"
            ),
            timeout=20,
        )
        # Deleted out of band: recreated, with a new UID.
        old_uid = deployments(cluster, namespace, "drift")[name].metadata.uid
        apps.delete_namespaced_deployment(name, namespace)
        until(
            "deleted Deployment recreated",
            lambda: (
                (d := deployments(cluster, namespace, "drift").get(name)) is not None
                and d.metadata.uid != old_uid
            ),
            timeout=20,
        )
        # A spec change rolls the Deployment; a removed variant's Deployment goes.
        variants = copy.deepcopy(MIXED[:1])
        variants[0]["extraArgs"] = ["--enable-chunked-prefill"]
        patch_spec(cluster, namespace, "drift", {"variants": variants})
        until(
            "spec change applied",
            lambda: (
                "--enable-chunked-prefill"
                in vllm_args(deployments(cluster, namespace, "drift")[name])
            ),
            timeout=20,
        )
        until(
            "removed variant deleted",
            lambda: "drift-a100" not in deployments(cluster, namespace, "drift"),
            timeout=20,
        )
        ready_pool(cluster, namespace, "drift")
        # Deleting the pool removes every child (ownerReferences, garbage collector).
        _custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "drift")
        core = client.CoreV1Api(cluster.api_client)

        def gone() -> bool:
            services = core.list_namespaced_service(namespace, label_selector=f"{POOL_LABEL}=drift")
            return not deployments(cluster, namespace, "drift") and not services.items

        until("children garbage-collected", gone, timeout=30)
        assert operator.proc is not None and operator.proc.poll() is None


def test_infeasible_variant_and_impossible_spec_via_kopf_run(
    cluster: LocalCluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    variants = [
        {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1},
        # 70B in bf16 needs ~141 GB: two 40 GB A100s cannot hold it.
        {"name": "a100", "gpu": "A100-40GB", "tensorParallelSize": 2, "minReplicas": 1},
    ]
    create_pool(cluster, namespace, pool_body("feasibility", variants))
    long_name = "p" + "x" * 58  # with "-h100" the Deployment name exceeds 63 characters
    create_pool(cluster, namespace, pool_body(long_name, variants[:1]))
    op = Operator(
        operator_kubeconfig, tmp_path / "kopf.log", namespaces=(namespace,), via_kopf=True
    )
    with running(op):
        pool = ready_pool(cluster, namespace, "feasibility")
        a100 = next(v for v in pool["status"]["variants"] if v["name"] == "a100")
        expected = plan_variant(
            get_model("llama-3.1-70b"),
            catalog.get("A100-40GB"),
            tensor_parallel_size=2,
            max_model_len=8192,
        )
        assert not a100["feasible"]
        assert a100["reason"] == f"Infeasible: {expected.reason}"
        degraded = condition(pool, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "VariantInfeasible")
        assert set(deployments(cluster, namespace, "feasibility")) == {"feasibility-h100"}

        def invalid() -> dict[str, Any] | None:
            p = get_pool(cluster, namespace, long_name)
            return p if condition(p, "Ready").get("reason") == "InvalidSpec" else None

        bad = until("InvalidSpec condition", invalid, timeout=30)
        assert "63" in condition(bad, "Ready")["message"]
        version = bad["metadata"]["resourceVersion"]
        time.sleep(3 * op.resync_seconds + 1)
        # A permanent error is reported once, never retried in a loop, and creates nothing.
        assert get_pool(cluster, namespace, long_name)["metadata"]["resourceVersion"] == version
        assert op.text().count("not retried until its spec changes") == 1
        assert not deployments(cluster, namespace, long_name)


def test_unschedulable_variant_recovers_when_a_node_is_added(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    # No L4 node exists in the default fleet: the pod stays Pending.
    variants = [{"name": "l4", "gpu": "L4", "minReplicas": 1}]
    create_pool(cluster, namespace, pool_body("small", variants, catalog_name="llama-3.1-8b"))
    group = fleet.NodeGroup(
        name=f"l4-{uuid.uuid4().hex[:8]}", count=1, gpu="L4", gpusPerNode=1, cpu="8", memory="64Gi"
    )
    body = fleet.render_node(group, 0)
    core = client.CoreV1Api(cluster.api_client)
    with running(operator):

        def unschedulable() -> dict[str, Any] | None:
            pool = get_pool(cluster, namespace, "small")
            variant = ((pool.get("status") or {}).get("variants") or [{}])[0]
            return pool if str(variant.get("reason", "")).startswith("Unschedulable: ") else None

        pool = until("variant Unschedulable", unschedulable, timeout=40)
        reason = pool["status"]["variants"][0]["reason"]
        pending = pods(cluster, namespace, "small")[0]
        scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
        assert reason == f"Unschedulable: {scheduled.message}"
        assert "nodes are available" in reason
        degraded = condition(pool, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "VariantUnschedulable")
        try:
            nodes.create(core, body)
            pool = ready_pool(cluster, namespace, "small", timeout=60)
            assert pool["status"]["variants"][0]["reason"] == ""
            assert condition(pool, "Degraded")["status"] == "False"
            assert pods(cluster, namespace, "small")[0].spec.node_name == body["metadata"]["name"]
        finally:
            _custom(cluster).delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "small"
            )
            until("pods gone", lambda: not pods(cluster, namespace, "small"), timeout=30)
            core.delete_node(body["metadata"]["name"])


def test_missing_secret_is_reported_without_a_hot_loop_and_recovers(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    create_pool(cluster, namespace, pool_body("gated", MIXED[:1], secret="hub"))
    with running(operator):

        def reported() -> dict[str, Any] | None:
            pool = get_pool(cluster, namespace, "gated")
            return pool if condition(pool, "Ready").get("reason") == "SecretMissing" else None

        pool = until("SecretMissing condition", reported, timeout=30)
        assert 'Secret "hub" not found' in condition(pool, "Ready")["message"]
        assert not deployments(cluster, namespace, "gated")
        version = pool["metadata"]["resourceVersion"]
        time.sleep(3 * operator.resync_seconds + 1)
        assert get_pool(cluster, namespace, "gated")["metadata"]["resourceVersion"] == version
        secret(cluster, namespace, "hub")
        ready_pool(cluster, namespace, "gated", timeout=30)
        env = (
            deployments(cluster, namespace, "gated")["gated-h100"]
            .spec.template.spec.containers[0]
            .env
        )
        token = next(e for e in env if e.name == "HF_TOKEN")
        assert token.value_from.secret_key_ref.name == "hub"


def _replica_sets(cluster: LocalCluster, namespace: str, pool: str) -> list[client.V1ReplicaSet]:
    apps = client.AppsV1Api(cluster.api_client)
    return list(
        apps.list_namespaced_replica_set(namespace, label_selector=f"{POOL_LABEL}={pool}").items
    )


def test_kill_9_mid_reconcile_then_restart_leaves_exactly_one_of_each_child(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    create_pool(cluster, namespace, pool_body("crash", copy.deepcopy(MIXED)))
    operator.start()
    # Kill as soon as the first child exists, before the status records any progress.
    until(
        "first child", lambda: core.list_namespaced_service(namespace).items, timeout=30, every=0.02
    )
    operator.kill()
    before = {
        d.metadata.name: d.metadata.uid for d in deployments(cluster, namespace, "crash").values()
    }
    with running(operator):
        ready_pool(cluster, namespace, "crash")
        after = deployments(cluster, namespace, "crash")
        assert set(after) == {"crash-h100", "crash-a100"}
        for name, uid in before.items():
            assert after[name].metadata.uid == uid  # kept, not replaced
        assert (
            len(core.list_namespaced_service(namespace, label_selector=f"{POOL_LABEL}=crash").items)
            == 1
        )
        assert len(_replica_sets(cluster, namespace, "crash")) == 2
        assert len(pods(cluster, namespace, "crash")) == 2


def test_spec_changed_a_b_c_while_down_converges_to_c_only(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    create_pool(cluster, namespace, pool_body("abc", MIXED[:1]))
    with running(operator):
        ready_pool(cluster, namespace, "abc")
    for length in (4096, 16384):  # B, then C, while the operator is down
        patch_spec(cluster, namespace, "abc", {"model": {"maxModelLen": length}})
    with running(operator):
        ready_pool(cluster, namespace, "abc")
        dep = deployments(cluster, namespace, "abc")["abc-h100"]
        assert flag(vllm_args(dep), "--max-model-len") == "16384"
        templates = [vllm_args_of(rs) for rs in _replica_sets(cluster, namespace, "abc")]
        # A's ReplicaSet and C's: B was never applied.
        assert sorted(flag(a, "--max-model-len") for a in templates) == ["16384", "8192"]


def vllm_args_of(rs: client.V1ReplicaSet) -> list[str]:
    return list(rs.spec.template.spec.containers[0].args)
