"""A RoutingPolicy's children and router.yaml, rendered from literal specs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import bodies, owned, selection
from gpufleet.controller.routingpolicy import policyrender
from gpufleet.router import config as router_config

REF = policyrender.PolicyRef(name="chat", namespace="ns", uid="uid-7")
TENANTS = [
    {"name": "acme", "apiKeySecretRef": {"name": "acme-key"}},
    {"name": "beta", "apiKeySecretRef": {"name": "shared-keys", "key": "beta"}},
    {"name": "gamma", "apiKeySecretRef": {"name": "shared-keys", "key": "gamma"}},
]
CA = {
    "url": "https://prom.monitoring:9090",
    "tls": {"caConfigMapRef": {"name": "ca", "key": "p.pem"}},
}


def spec(**over: Any) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate({"pools": ["a", "b"]} | over)


def kids(s: RoutingPolicySpec, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"generation": 3, "image": "gpufleet:op", "discovery": "pods"} | over
    out = policyrender.children(REF, s, ("a", "b"), **args)
    return {c["kind"]: c for c in out}


def pod(s: RoutingPolicySpec) -> dict[str, Any]:
    deployment: dict[str, Any] = kids(s)["Deployment"]
    return deployment["spec"]["template"]


def selector(labels: dict[str, str] | None = None, *exprs: tuple[str, str, list[str]]) -> Any:
    return common.LabelSelector.model_validate(
        {
            "matchLabels": labels or {},
            "matchExpressions": [{"key": k, "operator": o, "values": v} for k, o, v in exprs],
        }
    )


@pytest.mark.parametrize(
    ("sel", "labels", "matches"),
    [
        (selector(), {}, True),
        (selector({"team": "x"}), {"team": "x", "tier": "1"}, True),
        (selector({"team": "x"}), {"team": "y"}, False),
        (selector({"team": "x"}), {}, False),
        (selector(None, ("tier", "In", ["1", "2"])), {"tier": "2"}, True),
        (selector(None, ("tier", "In", ["1", "2"])), {"tier": "3"}, False),
        (selector(None, ("tier", "In", ["1", "2"])), {}, False),
        (selector(None, ("tier", "NotIn", ["1"])), {"tier": "2"}, True),
        (selector(None, ("tier", "NotIn", ["1"])), {"tier": "1"}, False),
        (selector(None, ("tier", "NotIn", ["1"])), {}, True),  # absent key: NotIn holds
        (selector(None, ("gpu", "Exists", [])), {"gpu": ""}, True),
        (selector(None, ("gpu", "Exists", [])), {}, False),
        (selector(None, ("gpu", "DoesNotExist", [])), {}, True),
        (selector(None, ("gpu", "DoesNotExist", [])), {"gpu": "h100"}, False),
        (selector({"team": "x"}, ("gpu", "Exists", [])), {"team": "x"}, False),  # all must hold
    ],
)
def test_selector_semantics_are_kubernetes(
    sel: common.LabelSelector, labels: dict[str, str], matches: bool
) -> None:
    assert selection.selector_matches(sel, labels) is matches


def test_named_pools_keep_their_order_and_a_selector_yields_sorted_matches() -> None:
    pools = {"z": {"team": "x"}, "m": {"team": "x", "canary": "1"}, "b": {"team": "y"}}
    named = spec(pools=["z", "b", "z", "missing"])
    assert selection.resolve_pools(named, pools) == ("z", "b", "missing")
    chosen = RoutingPolicySpec.model_validate({"poolSelector": {"matchLabels": {"team": "x"}}})
    assert selection.resolve_pools(chosen, pools) == ("m", "z")
    stable = RoutingPolicySpec.model_validate(
        {"poolSelector": {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}}
    )
    assert selection.resolve_pools(stable, pools) == ("b", "z")


def test_router_yaml_parses_as_router_config() -> None:
    s = spec(admission={"tenants": TENANTS}, prometheus=CA)
    text = kids(s)["ConfigMap"]["data"]["router.yaml"]
    parsed = router_config.parse(yaml.safe_load(text))
    assert parsed.kubernetes is not None
    assert (parsed.kubernetes.namespace, parsed.kubernetes.source) == ("ns", "pods")
    assert parsed.kubernetes.pools == ("a", "b")
    assert (parsed.kubernetes.config_map, parsed.kubernetes.policy_name) == ("chat-router", "chat")
    assert parsed.policy_generation == 3
    assert parsed.policy == s
    assert parsed.secret_names() == {"acme-key", "shared-keys"}
    beta = parsed.api_keys["beta"].secret
    assert beta is not None and (beta.name, beta.key) == ("shared-keys", "beta")
    assert str(parsed.prometheus_ca_file) == "/etc/gpufleet/prometheus-ca/ca.crt"


def test_router_yaml_has_no_ca_file_or_keys_unless_configured() -> None:
    doc = policyrender.router_config(REF, spec(), ("a",), generation=1, discovery="endpointslices")
    assert "prometheusCaFile" not in doc and doc["apiKeys"] == {}
    parsed = router_config.parse(doc)
    assert parsed.kubernetes is not None and parsed.kubernetes.source == "endpointslices"


def test_router_yaml_names_each_routed_pools_served_model_for_scale_from_zero() -> None:
    """Pools routed that exist get their spec.model.name; a named pool not created yet and
    a pool of the namespace the policy does not route get none."""
    models = {"a": "llama-3.1-8b-instruct", "other": "qwen"}
    doc = policyrender.router_config(
        REF, spec(), ("a", "b"), generation=1, discovery="pods", models=models
    )
    parsed = router_config.parse(doc)
    assert parsed.kubernetes is not None
    assert parsed.kubernetes.pool_models == {"a": "llama-3.1-8b-instruct"}
    no_models = policyrender.router_config(REF, spec(), ("a",), generation=1, discovery="pods")
    assert router_config.parse(no_models).kubernetes.pool_models == {}  # type: ignore[union-attr]


def test_role_reads_only_tenant_secrets_and_its_own_config_map() -> None:
    role = kids(spec(admission={"tenants": TENANTS}))["Role"]
    by_resource = {tuple(r["resources"]): r for r in role["rules"]}
    assert set(by_resource) == {("pods",), ("endpointslices",), ("configmaps",), ("secrets",)}
    assert by_resource[("secrets",)]["resourceNames"] == ["acme-key", "shared-keys"]
    assert by_resource[("configmaps",)]["resourceNames"] == ["chat-router"]
    assert all(r["verbs"] == ["get", "list", "watch"] for r in role["rules"])
    assert by_resource[("endpointslices",)]["apiGroups"] == ["discovery.k8s.io"]


def test_role_has_no_secret_rule_without_tenants() -> None:
    role = kids(spec())["Role"]
    assert all("secrets" not in r["resources"] for r in role["rules"])


def test_role_binding_binds_the_role_to_the_account() -> None:
    out = kids(spec())
    binding = out["RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": out["Role"]["metadata"]["name"],
    }
    account = out["ServiceAccount"]["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "ns"}
    ]
    assert out["ServiceAccount"]["automountServiceAccountToken"] is True


def test_pod_runs_under_the_restricted_profile() -> None:
    template = pod(spec())
    pod_ctx = template["spec"]["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] == 65532
    assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = template["spec"]["containers"]
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
    assert ctx["runAsNonRoot"] is True and ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert template["spec"]["serviceAccountName"] == "chat-router"


def test_container_command_probes_and_prometheus_annotations() -> None:
    template = pod(spec(router={"port": 9000}))
    (container,) = template["spec"]["containers"]
    assert [*container["command"], *container["args"]] == [
        "gpufleet", "router", "--config", "/etc/gpufleet/router/router.yaml",
        "--host", "$(POD_IP)", "--port", "9000", "--log-level", "INFO",
    ]  # fmt: skip
    assert container["env"] == [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    ]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9000",
        "prometheus.io/path": "/metrics",
    }


def test_volumes_config_tmp_and_the_ca_only_when_named() -> None:
    plain = pod(spec())["spec"]
    assert {v["name"] for v in plain["volumes"]} == {"config", "tmp"}
    assert {"name": "chat-router"} in [v.get("configMap") for v in plain["volumes"]]
    with_ca = pod(spec(prometheus=CA))["spec"]
    ca = next(v for v in with_ca["volumes"] if v["name"] == "prometheus-ca")
    assert ca["configMap"] == {"name": "ca", "items": [{"key": "p.pem", "path": "ca.crt"}]}
    mounts = {m["name"]: m["mountPath"] for m in with_ca["containers"][0]["volumeMounts"]}
    assert mounts == {
        "config": "/etc/gpufleet/router",
        "tmp": "/tmp",
        "prometheus-ca": "/etc/gpufleet/prometheus-ca",
    }


def test_deployment_shape_follows_spec_router() -> None:
    resources = {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    s = spec(router={"replicas": 3, "image": "mine:1", "serviceType": "LoadBalancer",
                     "resources": resources})  # fmt: skip
    out = kids(s)
    deployment = out["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mine:1"
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    assert out["Service"]["spec"]["type"] == "LoadBalancer"
    assert out["Service"]["spec"]["selector"] == contract.policy_labels("chat")
    assert deployment["spec"]["selector"]["matchLabels"] == contract.policy_labels("chat")
    assert out["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert kids(spec())["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "gpufleet:op"
    )


def test_every_child_is_owned_named_labelled_and_hashed() -> None:
    children = policyrender.children(REF, spec(), ("a",), generation=1, image="i", discovery="pods")
    assert [c["kind"] for c in children] == [
        "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
        "Deployment", "Service", "PodDisruptionBudget",
    ]  # fmt: skip
    for child in children:
        meta = child["metadata"]
        assert (meta["name"], meta["namespace"]) == ("chat-router", "ns")
        assert meta["labels"] == contract.policy_labels("chat") | {contract.COMPONENT: "router"}
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("RoutingPolicy", "chat", "uid-7")
        assert owner["controller"] is True
        assert meta["annotations"][contract.SPEC_HASH] == owned.spec_hash(child)


def test_sidecar_renders_no_deployment_service_or_budget() -> None:
    out = kids(spec(router={"mode": "sidecar"}))
    assert set(out) == {"ConfigMap", "ServiceAccount", "Role", "RoleBinding"}


def hashes(children: list[bodies.Child]) -> dict[str, str]:
    return {c["kind"]: c["metadata"]["annotations"][contract.SPEC_HASH] for c in children}


def test_hash_is_stable_and_a_policy_edit_leaves_the_pod_template_alone() -> None:
    def render_(s: RoutingPolicySpec, generation: int) -> dict[str, str]:
        out = policyrender.children(
            REF, s, ("a",), generation=generation, image="i", discovery="pods"
        )
        return hashes(out)

    first = render_(spec(strategy="cost"), 1)
    assert render_(spec(strategy="cost"), 1) == first
    edited = render_(spec(strategy="least-request"), 2)
    changed = {k for k in first if first[k] != edited[k]}
    assert changed == {"ConfigMap"}


@pytest.mark.parametrize(
    ("name", "mode", "field"),
    [
        ("a" * 57, "deployment", "metadata.name"),  # a-…-router: 64 characters
        ("a" * 57, "sidecar", "metadata.name"),  # label values are 63 at most too
        ("1chat", "deployment", "metadata.name"),  # a Service name starts with a letter
        ("chat.v2", "deployment", "metadata.name"),
    ],
)
def test_problems_name_the_field(name: str, mode: str, field: str) -> None:
    ref = policyrender.PolicyRef(name=name, namespace="ns", uid="u")
    found = policyrender.problems(ref, spec(router={"mode": mode}))
    assert len(found) == 1 and found[0].startswith(f"{field}:")


def test_problems_accept_good_names_and_flag_bad_selector_terms() -> None:
    assert policyrender.problems(REF, spec()) == ()
    ok = policyrender.PolicyRef(name="a" * 56, namespace="ns", uid="u")
    assert policyrender.problems(ok, spec()) == ()
    sidecar = policyrender.PolicyRef(name="1chat.v2", namespace="ns", uid="u")
    assert policyrender.problems(sidecar, spec(router={"mode": "sidecar"})) == ()
    bad = RoutingPolicySpec.model_validate(
        {"poolSelector": {"matchExpressions": [
            {"key": "t", "operator": "In"}, {"key": "g", "operator": "Exists", "values": ["x"]}
        ]}}
    )  # fmt: skip
    assert policyrender.problems(REF, bad) == (
        "spec.poolSelector.matchExpressions[0].values: must not be empty for operator In",
        "spec.poolSelector.matchExpressions[1].values: must be empty for operator Exists",
    )


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        (None, True),  # the operator's own router image
        ("ghcr.io/gpufleet/gpufleet:0.2.0", True),
        ("ghcr.io/gpufleet-evil/gpufleet:0.2.0", False),
        ("docker.io/attacker/router:1", False),
    ],
)
def test_router_image_only_under_the_allowed_prefixes(image: str | None, allowed: bool) -> None:
    router = {"image": image} if image else {}
    found = policyrender.image_problems(spec(router=router), ("ghcr.io/gpufleet/",))
    assert (found == ()) is allowed
    if not allowed:
        assert found[0].startswith("spec.router.image")
