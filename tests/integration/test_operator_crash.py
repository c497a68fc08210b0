"""The operator killed with SIGKILL at any point of its reconciles converges, with no
duplicate and no orphaned child.

A ModelPool and a RoutingPolicy are edited while the operator is down so that every
restart has work to do — Deployments to create and to prune as variants come and go,
the router's Deployment, Service and PodDisruptionBudget to create and to prune as the
policy flips between deployment and sidecar mode — and the operator is killed (no
graceful shutdown) after a random delay that spans its start, its first lists and its
applies. After the last restart the children must be exactly what the final specs ask
for, each controlled by its owner, within 30 s. Replicas are 0 and the router is mostly
a sidecar: what is tested is the operator's bookkeeping, not the pods'.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gpufleet import labels
from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, VERSION, Operator, replace_spec
from tests.waiting import until

pytestmark = pytest.mark.integration

POOL, POLICY = "crash", "crash-policy"
ROUTER = labels.router_name(POLICY)
SEED = 20261201
ROUNDS = 16
CONVERGE_SECONDS = 30.0
# The operator starts, lists and applies a round's changes about 0.4-1.2 s after being
# spawned on an idle machine, later on a loaded one. The kill time follows what the
# previous round saw: a kill before any change moves later, one after all changes moves
# earlier, one that cut the reconcile half-way stays — so the kills home in on the
# window where they interrupt work (between applies, before the status write) whatever
# the machine's speed, with a seeded jitter of up to KILL_STEP.
KILL_FROM, KILL_STEP = 0.25, 0.07
# Variants per round: each round adds or removes a Deployment.
VARIANTS = (["h100"], ["h100", "a100"], ["a100", "l40s"], ["l40s"], ["h100", "l40s"], ["a100"])
GPUS = {"h100": "H100-80GB", "a100": "A100-80GB", "l40s": "L40S"}
POOL_KINDS = ("Deployment", "Service", "PodDisruptionBudget")
POLICY_KINDS = ("ConfigMap", "ServiceAccount", "Role", "RoleBinding", *POOL_KINDS)


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    extra = ("--router-discovery", "pods", "--policy-poll-seconds", "2")
    op = Operator(
        operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,), extra=extra
    )
    try:
        yield op
    finally:
        op.stop()


def pool_spec(variants: list[str]) -> dict[str, Any]:
    return {
        "model": {
            "name": "llama-3.1-8b-instruct",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "catalogName": "llama-3.1-8b",
            "maxModelLen": 8192,
        },
        "variants": [{"name": v, "gpu": GPUS[v], "minReplicas": 0} for v in variants],
    }


def policy_spec(mode: str) -> dict[str, Any]:
    return {"pools": [POOL], "router": {"mode": mode, "replicas": 1}}


def _custom(cluster: LocalCluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def _list(cluster: LocalCluster, ns: str, kind: str) -> list[Any]:
    core = client.CoreV1Api(cluster.api_client)
    apps = client.AppsV1Api(cluster.api_client)
    policy = client.PolicyV1Api(cluster.api_client)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    listing = {
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "PodDisruptionBudget": policy.list_namespaced_pod_disruption_budget,
        "ConfigMap": core.list_namespaced_config_map,
        "ServiceAccount": core.list_namespaced_service_account,
        "Role": rbac.list_namespaced_role,
        "RoleBinding": rbac.list_namespaced_role_binding,
    }[kind]
    selector = f"{labels.MANAGED_BY}={labels.MANAGED_BY_VALUE}"
    return list(listing(ns, label_selector=selector).items)


def children(cluster: LocalCluster, ns: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(kind, name) → [(owner kind, owner uid)] of every object labelled as gpufleet's."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for kind in POLICY_KINDS:
        for obj in _list(cluster, ns, kind):
            refs = obj.metadata.owner_references or []
            found[(kind, obj.metadata.name)] = [(r.kind, r.uid) for r in refs if r.controller]
    return found


def expected(variants: list[str], mode: str, pool_uid: str, policy_uid: str) -> dict[Any, Any]:
    owner_pool, owner_policy = [("ModelPool", pool_uid)], [("RoutingPolicy", policy_uid)]
    want = {("Deployment", labels.deployment_name(POOL, v)): owner_pool for v in variants}
    want |= {("Service", POOL): owner_pool, ("PodDisruptionBudget", POOL): owner_pool}
    router_kinds = POLICY_KINDS if mode == "deployment" else POLICY_KINDS[:4]
    want |= {(kind, ROUTER): owner_policy for kind in router_kinds}
    return want


def _generation_applied(cluster: LocalCluster, ns: str) -> bool:
    api = _custom(cluster)
    pool = api.get_namespaced_custom_object(GROUP, VERSION, ns, "modelpools", POOL)
    if (pool.get("status") or {}).get("observedGeneration") != pool["metadata"]["generation"]:
        return False
    policy = api.get_namespaced_custom_object(GROUP, VERSION, ns, "routingpolicies", POLICY)
    config = client.CoreV1Api(cluster.api_client).read_namespaced_config_map(ROUTER, ns)
    rendered = yaml.safe_load(config.data["router.yaml"])
    return bool(rendered.get("policyGeneration") == policy["metadata"]["generation"])


def test_sigkill_at_random_points_converges_without_duplicates_or_orphans(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    rng = random.Random(SEED)
    api = _custom(cluster)
    for plural, kind, name, spec in (
        ("modelpools", "ModelPool", POOL, pool_spec(VARIANTS[0])),
        ("routingpolicies", "RoutingPolicy", POLICY, policy_spec("deployment")),
    ):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
        body["spec"] = spec
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    kills: list[float] = []
    partial = 0  # rounds killed after changing some children but before finishing
    outcomes: list[str] = []
    offset = KILL_FROM
    for round_ in range(ROUNDS):
        variants, mode = VARIANTS[round_ % len(VARIANTS)], ("deployment", "sidecar")[round_ % 2]
        replace_spec(cluster, namespace, "modelpools", POOL, pool_spec(variants))
        replace_spec(cluster, namespace, "routingpolicies", POLICY, policy_spec(mode))
        before = children(cluster, namespace)
        delay = offset + KILL_STEP * rng.random()
        operator.start()
        time.sleep(delay)
        operator.kill()
        kills.append(round(delay, 2))
        after = children(cluster, namespace)
        done = set(after) == set(expected(variants, mode, "", ""))
        outcome = "untouched" if after == before else "done" if done else "partial"
        outcomes.append(outcome)
        partial += outcome == "partial"
        if outcome == "untouched":
            offset += KILL_STEP
        elif outcome == "done":
            offset = max(0.05, offset - KILL_STEP)
    # The last state leaves the router's Deployment, Service and PDB to prune (sidecar)
    # and drops the a100 variant's Deployment made in an earlier round.
    variants, mode = ["h100", "l40s"], "sidecar"
    replace_spec(cluster, namespace, "modelpools", POOL, pool_spec(variants))
    replace_spec(cluster, namespace, "routingpolicies", POLICY, policy_spec(mode))
    pool_uid = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelpools", POOL)[
        "metadata"
    ]["uid"]
    policy_uid = api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "routingpolicies", POLICY
    )["metadata"]["uid"]
    want = expected(variants, mode, pool_uid, policy_uid)

    started = time.monotonic()
    operator.start()

    def converged() -> bool:
        return children(cluster, namespace) == want and _generation_applied(cluster, namespace)

    try:
        until("children converged after the kills", converged, timeout=CONVERGE_SECONDS)
    except AssertionError:
        found = children(cluster, namespace)
        extra = sorted(set(found) - set(want))
        missing = sorted(set(want) - set(found))
        wrong = sorted(k for k in set(found) & set(want) if found[k] != want[k])
        raise AssertionError(
            f"after kills at {kills} s: extra {extra}, missing {missing}, wrong owner {wrong}"
            f"\n{operator.text()[-3000:]}"
        ) from None
    took = time.monotonic() - started
    print(json.dumps({"kills_s": kills, "outcomes": outcomes, "converged_s": round(took, 1)}))
    # Some kill must have cut a reconcile half-way, or this tested only clean restarts.
    assert partial >= 1, f"no kill at {kills} s interrupted a reconcile half-way"
    # Nothing changes afterwards: no late duplicate from a reconcile still in flight.
    time.sleep(3)
    assert children(cluster, namespace) == want
