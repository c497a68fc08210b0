"""The router's live configuration, watch plan, learned weights and /stats feedback:
pure functions over literal inputs."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from gpufleet.router import config, discovery, liveconfig, stats
from gpufleet.router.kubewatch import Spec
from gpufleet.router.registry import Registry
from gpufleet.routing import throughput
from gpufleet.routing.model import Endpoint

TENANT = {"name": "acme", "apiKeySecretRef": {"name": "acme-key", "key": "token"}}
KUBE = {"namespace": "ns", "pools": ["a"], "configMap": "p-router", "kubeconfig": "/k"}


def _document(**policy: Any) -> dict[str, Any]:
    kube = {k: v for k, v in KUBE.items() if k != "kubeconfig"}
    return {"kubernetes": kube, "policyGeneration": 2,
            "policy": {"pools": ["a"], "admission": {"tenants": [TENANT]}, **policy},
            "apiKeys": {"acme": {"secret": {"name": "acme-key", "key": "token"}}}}  # fmt: skip


CURRENT = config.parse({**_document(), "kubernetes": KUBE, "policyGeneration": 1})
SECRETS = {"acme-key": {"token": base64.b64encode(b"key-one-1234").decode()}}


def _map(document: object) -> dict[str, str]:
    return {"router.yaml": yaml.safe_dump(document)}


def test_a_changed_document_is_resolved_with_its_keys() -> None:
    doc = _document(modelAliases=[{"name": "fast", "model": "m"}], scorerWeights={"load": 3})
    resolved = liveconfig.resolve(CURRENT, config_map=_map(doc), secrets=SECRETS)
    assert resolved.config.policy_generation == 2
    assert [a.name for a in resolved.config.policy.model_aliases] == ["fast"]
    assert resolved.config.policy.scorer_weights.load == 3
    assert resolved.keys == {"acme": "key-one-1234"}
    # Where this process finds the API is not the document's to change.
    assert resolved.config.kubernetes is not None
    assert str(resolved.config.kubernetes.kubeconfig) == "/k"


@pytest.mark.parametrize(
    ("config_map", "secrets", "fragment"),
    [
        (None, SECRETS, "ConfigMap p-router not found"),
        ({"other": "x"}, SECRETS, "ConfigMap p-router has no key router.yaml"),
        ({"router.yaml": "a: [b"}, SECRETS, "not YAML"),
        (_map({**_document(), "policy": {"strategy": "random"}}), SECRETS, "policy.strategy"),
        (_map({"policy": {}, "backends": [{"url": "http://h:1", "model": "m", "gpu": "L4"}]}),
         SECRETS,
         "must keep Kubernetes discovery"),
        (_map(_document()), {}, "apiKeys.acme.secret: Secret acme-key not found"),
        (_map(_document()), {"acme-key": {"token": ""}}, "apiKeys.acme: the key is empty"),
    ],
)  # fmt: skip
def test_an_unusable_change_names_what_is_wrong(
    config_map: dict[str, str] | None, secrets: Any, fragment: str
) -> None:
    with pytest.raises(config.ConfigError, match=fragment.replace(".", r"\.")):
        liveconfig.resolve(CURRENT, config_map=config_map, secrets=secrets)


def test_without_a_config_map_only_keys_are_reread() -> None:
    cfg = config.parse({**_document(), "kubernetes": {"namespace": "ns", "pools": ["a"]}})
    resolved = liveconfig.resolve(cfg, config_map=None, secrets=SECRETS)
    assert resolved.config is cfg and resolved.keys == {"acme": "key-one-1234"}


def test_watch_specs_follow_pools_secrets_and_source() -> None:
    cfg = config.parse({**_document(), "kubernetes": {**KUBE, "pools": ["b", "a"]}})
    assert discovery.watch_specs(cfg, discovery.pools(cfg, [])) == {
        Spec("secrets", "ns", field_selector="metadata.name=acme-key"),
        Spec("configmaps", "ns", field_selector="metadata.name=p-router"),
        Spec("pods", "ns", label_selector="gpufleet.io/pool in (a,b)"),
        Spec("endpointslices", "ns", label_selector="kubernetes.io/service-name in (a,b)"),
    }
    pods = config.parse({"kubernetes": {"namespace": "ns", "source": "pods", "pools": []},
                         "policy": {"pools": ["x"]}})  # fmt: skip
    assert discovery.watch_specs(pods, discovery.pools(pods, [])) == set()


def test_a_pool_selector_watches_model_pools() -> None:
    cfg = config.parse({"kubernetes": {"namespace": "ns", "source": "pods"}, "policy": {
        "poolSelector": {"matchLabels": {"team": "x"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "old", "operator": "DoesNotExist"}]}}})  # fmt: skip
    assert discovery.watch_specs(cfg, discovery.pools(cfg, [])) == {
        Spec("modelpools", "ns", label_selector="team=x,tier in (a,b),!old")
    }
    assert Spec("pods", "ns", label_selector="gpufleet.io/pool in (m,n)") in (
        discovery.watch_specs(cfg, discovery.pools(cfg, ["n", "m"]))
    )


def _auto(**overrides: float) -> config.RouterConfig:
    weights = {"mode": "auto", "minSamples": 2, "overrides": overrides}
    policy = {"pools": ["a"], "generationWeights": weights}
    return config.parse({"kubernetes": {"namespace": "ns"}, "policy": policy})


def _endpoint(url: str, gpu: str, tp: int = 1) -> Endpoint:
    return Endpoint(url, "m", gpu, tp, throughput=1.0, pool="a")


def test_learned_weights_survive_endpoints_being_replaced() -> None:
    cfg, learner = _auto(), throughput.Learner(half_life_s=60, min_samples=2)
    fast, slow = _endpoint("http://f", "H100-80GB"), _endpoint("http://s", "H100-80GB")
    for now in (1.0, 2.0):
        learner.observe("http://f", tokens=300, seconds=1, now=now)
        learner.observe("http://s", tokens=100, seconds=1, now=now)
    registry = Registry(cfg.policy.failure_handling.circuit_breaker, clock=lambda: 0.0)
    registry.replace(discovery.weigh(cfg, learner, [fast, slow]))
    # A discovery update brings the same endpoints with catalog figures again ...
    registry.replace(discovery.weigh(cfg, learner, [fast, slow, _endpoint("http://n", "L4")]))
    weights = {i: s.endpoint.throughput for i, s in registry.slots.items()}
    # ... and the learned ratio stands (3:1, scaled to the catalog mean of the two).
    assert weights["http://f"] == pytest.approx(3 * weights["http://s"])
    assert weights["http://f"] + weights["http://s"] == pytest.approx(2 * 1.64)
    assert weights["http://n"] == pytest.approx(0.15)  # not learned yet: catalog


def test_overrides_apply_per_gpu_times_tp() -> None:
    learner = throughput.Learner(half_life_s=60, min_samples=2)
    [weighed] = discovery.weigh(_auto(H200=2.5), learner, [_endpoint("http://x", "H200", 2)])
    assert weighed.throughput == pytest.approx(5.0)


def test_stats_feedback_shape() -> None:
    cfg = _auto()
    registry = Registry(cfg.policy.failure_handling.circuit_breaker, clock=lambda: 100.0)
    registry.replace(discovery.weigh(cfg, throughput.Learner(60, 2), [
        _endpoint("http://1", "H100-80GB", 2), _endpoint("http://2", "H100-80GB", 2),
        Endpoint("http://3", "m", "L4", 1, 1.0, pool="b")]))  # fmt: skip
    registry.slots["http://2"].healthy = False
    registry.slots["http://3"].breaker.opened_at = 99.0
    state = liveconfig.ConfigState(generation=7, error="", applied_at=1733050000.0)
    doc = stats.document(stats.Stats(), registry, strategy="cost", signal_age_s=None,
                         signal_error="", queue_waiting=0, config_state=state)  # fmt: skip
    assert doc["config"] == {"policyGeneration": 7, "error": "", "appliedAt": 1733050000.0}
    assert doc["backends"] == [
        {"pool": "a", "gpu": "H100-80GB", "endpoints": 2, "readyEndpoints": 1},
        {"pool": "b", "gpu": "L4", "endpoints": 1, "readyEndpoints": 0},
    ]
    assert doc["effectiveWeights"] == {"H100-80GB": 1.64, "L4": 0.15}
