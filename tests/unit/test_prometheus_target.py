"""Where a Prometheus URL may point (table-driven): loopback, link-local and unspecified
hosts in every spelling the resolver reads are refused unless the operator allows local
hosts, for its own --prometheus-url and a RoutingPolicy's alike (the reader's refusal to
follow redirects is in test_promquery)."""

from __future__ import annotations

import argparse
import re

import pytest

from gpufleet import prometheustarget as target
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import command
from gpufleet.controller.routingpolicy import policyrender
from gpufleet.operatorconfig import OperatorConfig


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:9090", "loopback"),
        ("http://127.1:9090", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://localhost:9090", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://prom.localhost/", "loopback"),
        ("http://[::1]:9090", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:9090", "unspecified"),
        ("https://prom.monitoring:9090", None),
        ("http://10.0.0.7:9090", None),
        ("http://prometheus/", None),
        ("http://[2001:db8::1]:9090", None),
    ],
)
def test_local_hosts_in_every_spelling(url: str, kind: str | None) -> None:
    assert target.local_kind(url) == kind
    refused = target.problem("spec.prometheus.url", url, allow_local=False)
    assert (refused is None) is (kind is None)
    if kind is not None:
        assert refused is not None and refused.startswith(f"spec.prometheus.url {url!r}")
        assert target.FLAG in refused
    assert target.problem("spec.prometheus.url", url, allow_local=True) is None


def _policy(url: str) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate({"pools": ["a"], "prometheus": {"url": url}})


def test_a_policy_pointing_at_the_metadata_service_is_refused_naming_the_field() -> None:
    (problem,) = policyrender.prometheus_problems(
        _policy("http://169.254.169.254/latest"), allow_local=False
    )
    assert problem.startswith("spec.prometheus.url 'http://169.254.169.254/latest' is a link")
    local = _policy("http://127.0.0.1:9090")
    assert policyrender.prometheus_problems(local, allow_local=True) == ()
    assert policyrender.prometheus_problems(_policy("https://p.monitoring:9090"),
                                            allow_local=False) == ()  # fmt: skip
    no_url = RoutingPolicySpec.model_validate({"pools": ["a"]})
    assert policyrender.prometheus_problems(no_url, allow_local=False) == ()


def test_the_operators_own_url_needs_the_allowance() -> None:
    with pytest.raises(ValueError, match=re.escape("--prometheus-url 'http://127.0.0.1:9090'")):
        OperatorConfig(prometheus_url="http://127.0.0.1:9090")
    allowed = OperatorConfig(prometheus_url="http://127.0.0.1:9090", allow_local_prometheus=True)
    assert allowed.allow_local_prometheus
    env = {"GPUFLEET_OPERATOR_PROMETHEUS_URL": "http://[::1]:9090",
           "GPUFLEET_OPERATOR_ALLOW_LOCAL_PROMETHEUS": "true"}  # fmt: skip
    assert OperatorConfig.from_env(env).allow_local_prometheus
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--prometheus-url", "http://localhost:9090"])
    with pytest.raises(ValueError, match="--allow-local-prometheus"):
        command.config_from(args)
    args = parser.parse_args(["--prometheus-url", "http://localhost:9090", target.FLAG])
    assert command.config_from(args).allow_local_prometheus
