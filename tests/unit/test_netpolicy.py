"""A ModelPool's NetworkPolicy (table-driven): its ports admit the routers of the
policies that route the pool and the metrics scraper, never everyone; which policies
route a pool; and the switch that renders none."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from gpufleet import labels as contract
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import command
from gpufleet.controller.modelpool import netpolicy, plan, render, variants
from gpufleet.operatorconfig import OperatorConfig

REF = render.PoolRef(name="chat", namespace="team-a", uid="uid-1")
SCRAPER = netpolicy.Scraper("monitoring", {"app.kubernetes.io/name": "prometheus"})
MODEL = {"name": "m", "source": "hf://org/m", "catalogName": "llama-3.1-8b"}


def pool(**serving: Any) -> ModelPoolSpec:
    return ModelPoolSpec.model_validate(
        {"model": MODEL, "variants": [{"name": "h100", "gpu": "H100-80GB"}], "serving": serving}
    )


def _rules(body: dict[str, Any]) -> list[tuple[list[int], list[dict[str, Any]]]]:
    return [([p["port"] for p in r["ports"]], r["from"]) for r in body["spec"]["ingress"]]


ROUTERS = {
    "podSelector": {
        "matchLabels": {contract.MANAGED_BY: "gpufleet", contract.COMPONENT: "router"},
        "matchExpressions": [
            {"key": contract.ROUTING_POLICY, "operator": "In", "values": ["a", "b"]}
        ],
    }
}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


@pytest.mark.parametrize(
    ("spec", "routers", "rules"),
    [
        (pool(), ("b", "a"), [([8000, 9400], [ROUTERS]), ([8000, 9400], [PROMETHEUS])]),
        (pool(port=9000, gpuHealth={"enabled": False}), ("a", "b"),
         [([9000], [ROUTERS]), ([9000], [PROMETHEUS])]),
        # No policy routes the pool: no router rule, and never a rule without peers.
        (pool(), (), [([8000, 9400], [PROMETHEUS])]),
    ],
)  # fmt: skip
def test_the_ports_admit_the_routers_and_the_scraper_only(
    spec: ModelPoolSpec, routers: tuple[str, ...], rules: list[Any]
) -> None:
    body: Any = netpolicy.pool_policy(REF, spec, routers=routers, scraper=SCRAPER)
    assert body["spec"]["podSelector"] == {"matchLabels": contract.pool_labels("chat")}
    assert body["spec"]["policyTypes"] == ["Ingress"]
    assert _rules(body) == rules
    assert all(r["from"] for r in body["spec"]["ingress"])  # an empty from admits all
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], body["metadata"]["name"]) == ("ModelPool", "uid-1", "chat")


POLICIES = {
    "named": RoutingPolicySpec.model_validate({"pools": ["chat", "other"]}),
    "selected": RoutingPolicySpec.model_validate(
        {"poolSelector": {"matchLabels": {"tier": "chat"}}}
    ),
    "elsewhere": RoutingPolicySpec.model_validate({"pools": ["other"]}),
}


@pytest.mark.parametrize(
    ("pool_name", "labels", "expected"),
    [
        ("chat", {"chat": {"tier": "chat"}}, ("named", "selected")),
        ("chat", {"chat": {"tier": "batch"}}, ("named",)),
        ("other", {"other": {}}, ("elsewhere", "named")),
        ("lonely", {"lonely": {}}, ()),
    ],
)
def test_which_policies_route_a_pool(
    pool_name: str, labels: dict[str, dict[str, str]], expected: tuple[str, ...]
) -> None:
    assert netpolicy.routing(pool_name, POLICIES, labels) == expected


def test_the_policy_is_applied_before_any_deployment_and_only_when_asked() -> None:
    spec = pool()
    decisions = variants.plan_pool(spec)
    ingress = netpolicy.Ingress(routers=("a",), scraper=SCRAPER)
    kinds = [c["kind"] for c in plan.desired(REF, spec, decisions, {}, ingress=ingress)]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")
    assert "NetworkPolicy" not in [c["kind"] for c in plan.desired(REF, spec, decisions, {})]


def test_the_switch_and_the_scraper_from_flags() -> None:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    defaults = command.config_from(parser.parse_args([]))
    assert defaults.network_policies is True
    assert defaults.scraper_labels == {"app.kubernetes.io/name": "prometheus"}
    args = parser.parse_args(["--no-network-policies", "--metrics-scraper-namespace", "obs",
                              "--metrics-scraper-label", "app=prom",
                              "--metrics-scraper-label", "team=sre"])  # fmt: skip
    config = command.config_from(args)
    assert not config.network_policies and config.metrics_scraper_namespace == "obs"
    assert config.scraper_labels == {"app": "prom", "team": "sre"}
    assert not OperatorConfig.from_env(
        {"GPUFLEET_OPERATOR_NETWORK_POLICIES": "false"}
    ).network_policies
    with pytest.raises(ValueError, match="--metrics-scraper-label 'prometheus'"):
        OperatorConfig(metrics_scraper_labels=("prometheus",))
