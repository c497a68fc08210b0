"""The operator's pure reconcile core: observed projections, plan, status, liveness, queue."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import pytest

from gpufleet import labels as contract
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import bodies, conditions, liveness, observe, owned
from gpufleet.controller.modelpool import plan, render, status, variants
from gpufleet.controller.workqueue import WorkQueue
from gpufleet.operatorconfig import OperatorConfig

POOL = render.PoolRef(name="p", namespace="ns", uid="u")
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def spec(variants_: list[dict[str, Any]] | None = None, **over: Any) -> ModelPoolSpec:
    return ModelPoolSpec.model_validate(
        {
            "model": {"name": "m", "source": "hf://o/m", "catalogName": "llama-3.1-8b",
                      "maxModelLen": 8192},
            "variants": variants_ or [{"name": "a", "gpu": "H100-80GB", "minReplicas": 1}],
        } | over
    )  # fmt: skip


def live(intent: bodies.Child, **over: Any) -> observe.ObservedChild:
    """What the API server would return for ``intent``: defaults added, status set."""
    doc = json.loads(json.dumps(intent))
    doc["metadata"] |= {"uid": "x", "resourceVersion": "5", "generation": 1}
    doc["spec"]["extraDefault"] = True
    doc["status"] = {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    return observe.child(doc) if not over else observe.child(over["mutate"](doc))


def keyed(children: list[observe.ObservedChild]) -> dict[tuple[str, str], observe.ObservedChild]:
    return {(c.kind, c.name): c for c in children}


def test_plan_creates_everything_when_nothing_exists() -> None:
    s = spec()
    intents = plan.desired(POOL, s, variants.plan_pool(s), {})
    todo = owned.diff(intents, {})
    assert [c["kind"] for c in todo.apply] == ["Service", "PodDisruptionBudget", "Deployment"]
    assert todo.delete == ()


def test_plan_is_empty_when_live_objects_contain_the_intent() -> None:
    s = spec()
    intents = plan.desired(POOL, s, variants.plan_pool(s), {})
    assert owned.diff(intents, keyed([live(c) for c in intents])).empty


def _edit_image(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Deployment":
        doc["spec"]["template"]["spec"]["containers"][0]["image"] = "evil"
    return doc


def _old_hash(doc: dict[str, Any]) -> dict[str, Any]:
    doc["metadata"]["annotations"][contract.SPEC_HASH] = "old"
    return doc


@pytest.mark.parametrize("mutate", [_edit_image, _old_hash])
def test_plan_reapplies_drifted_or_outdated_children(mutate: Any) -> None:
    s = spec()
    intents = plan.desired(POOL, s, variants.plan_pool(s), {})
    observed = keyed([live(c, mutate=mutate) for c in intents])
    todo = owned.diff(intents, observed)
    assert "Deployment" in [c["kind"] for c in todo.apply]


def test_plan_deletes_children_of_removed_or_infeasible_variants_and_holds_on_secret() -> None:
    two = spec([{"name": "a", "gpu": "H100-80GB"}, {"name": "b", "gpu": "L4"}])
    observed = keyed([live(c) for c in plan.desired(POOL, two, variants.plan_pool(two), {})])
    one = spec([{"name": "a", "gpu": "H100-80GB"}])
    intents = plan.desired(POOL, one, variants.plan_pool(one), observed)
    assert [(d.kind, d.name) for d in owned.diff(intents, observed).delete] == [
        ("Deployment", "p-b")
    ]
    assert owned.diff(intents, observed, hold_deployments=True).empty
    assert [c["kind"] for c in owned.diff(intents, {}, hold_deployments=True).apply] == [
        "Service", "PodDisruptionBudget"]  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "managers", "expected"),
    [
        ({"minReplicas": 2}, {"gpufleet"}, 2),
        ({"minReplicas": 2}, {"gpufleet-autoscaler"}, 2),  # not autoscaled: the operator owns it
        ({"minReplicas": 1, "maxReplicas": 4}, {"gpufleet"}, 1),
        ({"minReplicas": 1, "maxReplicas": 4}, {"gpufleet-autoscaler"}, None),
        ({"minReplicas": 1, "maxReplicas": 4}, {"kubectl", "gpufleet"}, None),
    ],
)
def test_replicas_left_to_the_autoscaler_once_it_owns_them(
    variant: dict[str, Any], managers: set[str], expected: int | None
) -> None:
    s = spec([{"name": "a", "gpu": "H100-80GB"} | variant])
    seen = observe.ObservedChild(kind="Deployment", namespace="ns", name="p-a", uid="x",
                                 owner="p", spec_hash="", body={},
                                 replicas_managers=frozenset(managers))  # fmt: skip
    assert plan.replicas_intent(s, s.variants[0], seen) == expected


def test_replicas_managers_reads_managed_fields() -> None:
    fields = [
        {"manager": "gpufleet", "fieldsV1": {"f:spec": {"f:template": {}}}},
        {"manager": "hpa", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]
    assert observe.replicas_managers(fields) == frozenset({"hpa"})


@pytest.mark.parametrize(
    ("live_", "intent", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"l": [{"x": 1, "y": 2}]}, {"l": [{"x": 1}]}, True),
        ({"l": [{"x": 1}, {"x": 2}]}, {"l": [{"x": 1}]}, False),
        ({"s": "1"}, {"s": 1}, False),
    ],
)
def test_contains(live_: bodies.Json, intent: bodies.Json, expected: bool) -> None:
    assert observe.contains(live_, intent) is expected


def test_pod_projection_reads_the_schedulers_message() -> None:
    body = {
        "metadata": {"name": "x", "labels": {contract.VARIANT: "a"}},
        "spec": {},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available"}]},
    }  # fmt: skip
    assert observe.pod(body).unschedulable == "0/3 nodes are available"


def _observation(s: ModelPoolSpec, **over: Any) -> status.Observation:
    decisions = variants.plan_pool(s)
    intents = plan.desired(POOL, s, decisions, {})
    deps = {d.name: live(i) for d, i in zip(decisions, intents[2:], strict=False)}
    return status.Observation(generation=1, deployments=over.pop("deployments", deps),
                              pods=over.pop("pods", ()), **over)  # fmt: skip


def _conds(st: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in st.conditions}


UNSCHED = observe.ObservedPod(name="x", variant="a", node="", phase="Pending", ready=False,
                              unschedulable="0/3 nodes are available")  # fmt: skip


@pytest.mark.parametrize(
    ("over", "ready", "progressing", "degraded"),
    [
        ({}, ("True", "AllVariantsReady"), ("False", "Complete"), ("False", "AsExpected")),
        ({"deployments": {}}, ("False", "VariantsNotReady"), ("True", "RollingOut"),
         ("False", "AsExpected")),
        ({"deployments": {}, "pods": (UNSCHED,)}, ("False", "VariantsNotReady"),
         ("False", "Unschedulable"), ("True", "VariantUnschedulable")),
        ({"missing_secret": 'Secret "s" not found'}, ("False", "SecretMissing"),
         ("False", "SecretMissing"), ("True", "SecretMissing")),
        ({"problems": ("bad name",)}, ("False", "InvalidSpec"), ("False", "InvalidSpec"),
         ("True", "InvalidSpec")),
    ],
)  # fmt: skip
def test_conditions(
    over: dict[str, Any],
    ready: tuple[str, str],
    progressing: tuple[str, str],
    degraded: tuple[str, str],
) -> None:
    s = spec()
    st = status.compute(s, variants.plan_pool(s), _observation(s, **over), previous=None, now=T0)
    assert _conds(st) == {"Ready": ready, "Progressing": progressing, "Degraded": degraded}


def test_infeasible_variant_degrades_but_pool_stays_ready() -> None:
    infeasible = {"name": "b", "gpu": "L4", "tensorParallelSize": 1, "maxModelLen": 131072}
    s = spec([{"name": "a", "gpu": "H100-80GB"}, infeasible])
    st = status.compute(s, variants.plan_pool(s), _observation(s), previous=None, now=T0)
    assert _conds(st)["Ready"] == ("True", "AllVariantsReady")
    assert _conds(st)["Degraded"] == ("True", "VariantInfeasible")
    b = st.variants[1]
    assert not b.feasible and b.reason.startswith("Infeasible: ") and b.desired_replicas == 0


def test_transition_time_moves_only_on_flips_and_events_follow_flips() -> None:
    s = spec()
    d = variants.plan_pool(s)
    first = status.compute(s, d, _observation(s, deployments={}), previous=None, now=T0)
    later = T0 + datetime.timedelta(minutes=5)
    same = status.compute(s, d, _observation(s, deployments={}), previous=first, now=later)
    assert same == first
    assert conditions.transitions(first, same) == []
    ready = status.compute(s, d, _observation(s), previous=first, now=later)
    times = {c.type: c.last_transition_time for c in ready.conditions}
    assert times["Ready"] == "2026-01-01T00:05:00Z"
    assert times["Degraded"] == "2026-01-01T00:00:00Z"  # still False: unchanged
    events = conditions.transitions(first, ready)
    assert {(e.type, e.reason) for e in events} == {("Normal", "AllVariantsReady"),
                                                   ("Normal", "Complete")}  # fmt: skip


def test_watch_tracker_flags_only_lasting_disagreement() -> None:
    t = liveness.WatchTracker(grace_seconds=10)
    t.delivered(("ns", "a"), "5")
    t.check({("ns", "a"): "5"}, now=0)
    assert t.stale(now=100) == []
    t.check({("ns", "a"): "6"}, now=100)  # the watch has not delivered version 6
    assert t.stale(now=105) == []
    t.check({("ns", "a"): "6"}, now=108)
    assert t.stale(now=111) == [("ns", "a")]
    t.delivered(("ns", "a"), "6")
    t.check({("ns", "a"): "6"}, now=112)
    assert t.stale(now=200) == []


async def test_workqueue_dedupes_and_serialises_keys() -> None:
    q = WorkQueue()
    q.add(("n", "a"))
    q.add(("n", "a"))
    assert len(q) == 1
    key = await q.get()
    q.add(key)  # while active: marked dirty, not handed out twice
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1 and await q.get() == key
    q.done(key)
    q.add_after(key, 0.01)
    q.add_after(key, 10)  # the earlier re-add wins
    assert await asyncio.wait_for(q.get(), timeout=2) == key
    q.close()


def test_config_from_env() -> None:
    env = {"GPUFLEET_OPERATOR_NAMESPACES": "a, b", "GPUFLEET_OPERATOR_RESYNC_SECONDS": "5",
           "GPUFLEET_OPERATOR_WORKERS": "2"}  # fmt: skip
    assert OperatorConfig.from_env(env) == OperatorConfig(
        namespaces=("a", "b"), resync_seconds=5.0, workers=2
    )


def test_importing_pure_controller_modules_imports_no_io_library() -> None:
    """The package ``__init__`` runs on every submodule import; it must stay empty of Kopf."""
    import subprocess
    import sys

    code = (
        "import sys, gpufleet.controller.modelpool.render, gpufleet.controller.modelpool.plan, "
        "gpufleet.controller.modelpool.status, gpufleet.operatorconfig; "
        "print(sorted(m for m in ('kopf', 'kubernetes', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _pod(
    name: str, variant: str, cost: str | None, phase: str = "Running", kv: str | None = "1"
) -> observe.ObservedPod:
    return observe.ObservedPod(
        name=name, variant=variant, node="n", phase=phase, ready=True, cost=cost,
        kv_cache_tokens=kv,
    )  # fmt: skip


def test_pod_patches_price_only_priced_variants_pods_that_differ() -> None:
    s = spec([
        {"name": "a", "gpu": "H100-80GB", "costPerGpuHour": 2.5},
        {"name": "b", "gpu": "L4"},
    ])  # fmt: skip
    pods = [
        _pod("a-1", "a", None),
        _pod("a-2", "a", "2.5"),
        _pod("a-3", "a", "9.0"),
        _pod("a-4", "a", None, phase="Succeeded"),
        _pod("b-1", "b", None),
    ]
    price = {contract.COST_ANNOTATION: "2.5"}
    assert plan.pod_patches(s, (), pods) == (
        plan.PodPatch(pod="a-1", annotations=price),
        plan.PodPatch(pod="a-3", annotations=price),
    )


def test_pod_patches_give_each_pod_its_variants_planned_kv_cache_once() -> None:
    s = spec([{"name": "a", "gpu": "H100-80GB"}, {"name": "x", "gpu": "L4", "minReplicas": 1,
              "tensorParallelSize": 1, "maxModelLen": 1000000}])  # fmt: skip
    a, x = variants.plan_pool(s)
    assert a.plan.kv_cache_tokens > 0 and not x.feasible
    pods = [
        _pod("a-1", "a", None, kv=None),  # new: the plan's figure
        _pod("a-2", "a", None, kv="123"),  # keeps the figure it was created under
        _pod("x-1", "x", None, kv=None),  # an infeasible variant has no figure to give
        _pod("a-3", "a", None, kv=None, phase="Succeeded"),
    ]
    tokens = {contract.KV_CACHE_TOKENS_ANNOTATION: str(a.plan.kv_cache_tokens)}
    assert plan.pod_patches(s, (a, x), pods) == (plan.PodPatch(pod="a-1", annotations=tokens),)


def test_catalog_model_annotation_in_the_pod_template_only_with_a_catalog_name() -> None:
    s = spec()
    decision = variants.plan_pool(s)[0]
    template = render.deployment(POOL, s, decision, replicas=1)["spec"]["template"]
    assert template["metadata"]["annotations"][contract.CATALOG_MODEL_ANNOTATION] == (
        "llama-3.1-8b"
    )
    assert contract.COST_ANNOTATION not in template["metadata"]["annotations"]


def _body(namespace: str, name: str, rv: str, **labels_: str) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": name, "resourceVersion": rv, "generation": 1,
            "labels": labels_}  # fmt: skip
    return {"metadata": meta}


async def _nothing(state: Any, key: Any) -> None:
    return None


def _state() -> Any:
    from gpufleet.api.modelpool import ModelPoolStatus
    from gpufleet.api.resources import ModelPool, RoutingPolicy
    from gpufleet.api.routingpolicy import RoutingPolicyStatus
    from gpufleet.controller import runtime

    pools = runtime.Kind(name="ModelPool", plural="modelpools", owner_label=contract.POOL,
                         model=ModelPool, status_model=ModelPoolStatus,
                         reconcile=_nothing)  # fmt: skip
    policies = runtime.Kind(name="RoutingPolicy", plural="routingpolicies",
                            owner_label=contract.ROUTING_POLICY, model=RoutingPolicy,
                            status_model=RoutingPolicyStatus, reconcile=_nothing,
                            follows=("ModelPool",))  # fmt: skip
    kinds: dict[str, Any] = {k.name: runtime.KindState(kind=k) for k in (pools, policies)}
    return runtime.OperatorState(config=OperatorConfig(), client=None, kinds=kinds)  # type: ignore[arg-type]


async def test_a_pool_changing_requeues_the_policies_of_its_namespace() -> None:
    state = _state()
    policies = state.kind("RoutingPolicy")
    state.object_event("RoutingPolicy", "ADDED", _body("a", "p", "1"))
    state.object_event("RoutingPolicy", "ADDED", _body("b", "q", "1"))
    for _ in range(2):
        await policies.queue.get()
    policies.queue.done(("a", "p"))
    policies.queue.done(("b", "q"))
    steps = [
        (_body("a", "m", "2", tier="small"), "ADDED", 1),  # appeared
        (_body("a", "m", "3", tier="small"), "MODIFIED", 0),  # status only: same labels
        (_body("a", "m", "4", tier="large"), "MODIFIED", 1),  # relabelled
        (_body("a", "m", "5", tier="large") | {"spec": {"x": 1}}, "MODIFIED", 1),  # spec edited
        (_body("a", "m", "6", tier="large") | {"spec": {"x": 1}}, "MODIFIED", 0),  # same spec
        (_body("a", "m", "7", tier="large"), "DELETED", 1),  # gone
    ]
    for body, event, queued in steps:
        state.object_event("ModelPool", event, body)
        assert len(policies.queue) == queued, (event, body["metadata"]["labels"])
        if queued:
            assert await policies.queue.get() == ("a", "p")
            policies.queue.done(("a", "p"))


def test_children_of_one_owner_label_are_projected_with_their_owner() -> None:
    body = {"kind": "ConfigMap", "metadata": {"name": "p-router", "namespace": "ns",
            "labels": {contract.ROUTING_POLICY: "p"}}}  # fmt: skip
    assert observe.child(body, owner_label=contract.ROUTING_POLICY).owner == "p"
    assert observe.child(body).owner == ""


@pytest.mark.parametrize(
    ("owners", "fragment"),
    [
        (None, ""),  # nothing of that name: create it
        ([{"kind": "ModelPool", "name": "p", "uid": "u", "controller": True}], ""),
        ([], "is not gpufleet's"),  # a user's own object
        ([{"kind": "ReplicaSet", "name": "r", "uid": "u", "controller": False}],
         "is not gpufleet's"),
        ([{"kind": "RoutingPolicy", "name": "p", "uid": "other", "controller": True}],
         "controlled by RoutingPolicy p"),
    ],
)  # fmt: skip
def test_claim_problem_never_takes_over_another_owners_object(
    owners: list[dict[str, Any]] | None, fragment: str
) -> None:
    s = spec()
    service = plan.desired(POOL, s, variants.plan_pool(s), {})[0]
    assert service["kind"] == "Service"
    found = None if owners is None else {"metadata": {"name": "p", "ownerReferences": owners}}
    problem = owned.claim_problem(service, found)
    assert (fragment in problem and problem.startswith("Service p")) if fragment else not problem


def test_deployment_intent_omits_replicas_once_the_autoscaler_applied_them() -> None:
    s = spec([{"name": "a", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 4}])
    decisions = variants.plan_pool(s)
    (deployment,) = [c for c in plan.desired(POOL, s, decisions, {}) if c["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1, "minReplicas until someone else scales it"

    def scaled(doc: dict[str, Any]) -> dict[str, Any]:
        doc["spec"]["replicas"] = 3
        doc["metadata"]["managedFields"] = [
            {"manager": "gpufleet", "operation": "Apply",
             "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "gpufleet-autoscaler", "operation": "Apply",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        ]  # fmt: skip
        return doc

    seen = keyed([live(deployment, mutate=scaled)])
    (again,) = [c for c in plan.desired(POOL, s, decisions, seen) if c["kind"] == "Deployment"]
    assert "replicas" not in again["spec"]
    # One apply without replicas (its spec hash differs) lets go of the field; then the
    # autoscaler's count stands and nothing is written again.
    assert owned.diff([again], seen).apply == (again,)
    after = keyed([live(again, mutate=scaled)])
    intents = [c for c in plan.desired(POOL, s, decisions, after) if c["kind"] == "Deployment"]
    assert owned.diff(intents, after).empty


def test_config_from_env_reads_the_autoscaler_settings() -> None:
    env = {"GPUFLEET_OPERATOR_PROMETHEUS_URL": "https://prom:9090",
           "GPUFLEET_OPERATOR_PROMETHEUS_CA_FILE": "/etc/ca.crt",
           "GPUFLEET_OPERATOR_PROMETHEUS_INSECURE_SKIP_VERIFY": "false",
           "GPUFLEET_OPERATOR_AUTOSCALE_SECONDS": "2"}  # fmt: skip
    config = OperatorConfig.from_env(env)
    assert (config.prometheus_url, str(config.prometheus_ca_file)) == (
        "https://prom:9090",
        "/etc/ca.crt",
    )
    assert config.autoscale_seconds == 2.0 and not config.prometheus_insecure_skip_verify
    with pytest.raises(ValueError, match="autoscale_seconds"):
        OperatorConfig(autoscale_seconds=0)


def test_gpu_agent_sidecars_run_the_routers_image_unless_told_otherwise() -> None:
    """A registry mirror set for routers (--router-image) reaches the sidecars too;
    --gpu-agent-image overrides it for them alone."""
    s = spec()

    def agent_images(config: OperatorConfig) -> set[str]:
        intents = plan.desired(POOL, s, variants.plan_pool(s), {}, agent_image=config.agent_image)
        pods = [c["spec"]["template"]["spec"] for c in intents if c["kind"] == "Deployment"]
        return {c["image"] for p in pods for c in p["containers"] if c["name"] == "gpu-agent"}

    assert agent_images(OperatorConfig(router_image="mirror/gpufleet:1")) == {"mirror/gpufleet:1"}
    both = OperatorConfig(router_image="mirror/gpufleet:1", gpu_agent_image="mirror/agent:2")
    assert agent_images(both) == {"mirror/agent:2"}
    assert OperatorConfig.from_env({"GPUFLEET_OPERATOR_GPU_AGENT_IMAGE": "x/y:3"}).agent_image == (
        "x/y:3"
    )
