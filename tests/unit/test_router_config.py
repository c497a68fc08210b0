"""Router config validation (errors name the key) and EndpointSlice parsing."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet import labels as contract
from gpufleet.router import config, discovery

BACKEND = {"url": "http://127.0.0.1:8001", "model": "llama-3.1-8b", "gpu": "H100-80GB"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "YAML mapping"),
        ({"policy": {}}, "exactly one of backends and kubernetes"),
        ({"backends": [{**BACKEND, "gpu": "H300"}], "policy": {}}, "backends.0.gpu"),
        ({"backends": [{**BACKEND, "url": "127.0.0.1"}], "policy": {}}, "backends.0.url"),
        ({"backends": [BACKEND], "policy": {"strategy": "random"}}, "policy.strategy"),
        ({"backends": [BACKEND], "policy": {"scorerWeights": {"load": -1}}},
         "policy.scorerWeights.load"),
        ({"backends": [BACKEND], "policy": {}, "limits": {"maxBodyBytes": 1}},
         "limits.maxBodyBytes"),
        ({"backends": [BACKEND], "policy": {}, "apiKeys": {"ghost": {"value": "12345678"}}},
         "not in policy.admission.tenants"),
        ({"backends": [BACKEND], "policy": {}, "bogus": 1}, "bogus"),
        # Discovery watches; the old polling interval is refused rather than ignored.
        ({"kubernetes": {"namespace": "a", "intervalSeconds": 2}, "policy": {}},
         "kubernetes.intervalSeconds"),
    ],
)  # fmt: skip
def test_errors_name_the_key(raw: Any, fragment: str) -> None:
    with pytest.raises(config.ConfigError, match=fragment.replace(".", r"\.")):
        config.parse(raw)


def test_defaults_and_planned_endpoints() -> None:
    cfg = config.parse({"backends": [BACKEND, {**BACKEND, "gpu": "A100-40GB",
                        "url": "http://127.0.0.1:8002", "kvCacheTokens": 1000}],
                        "policy": {"strategy": "cost"}})  # fmt: skip
    assert cfg.policy.pools == ("static",)
    fast, slow = discovery.static_endpoints(cfg)
    assert fast.throughput == pytest.approx(1.64) and fast.kv_capacity_tokens > 100_000
    assert slow.throughput == pytest.approx(0.76) and slow.kv_capacity_tokens == 1000


def _slice(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"ports": [{"name": "metrics", "port": 9400}, {"name": "http", "port": 8000}],
            "endpoints": list(endpoints)}  # fmt: skip


def _ep(ip: str, pod: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions, "target_ref": {"name": pod}}


def test_endpoints_from_slices_ready_only() -> None:
    cfg = config.parse({"kubernetes": {"namespace": "ns"}, "policy": {"pools": ["p"]}})
    pods = {
        "a": discovery.PodInfo("B200", 2, "llama-3.1-8b"),
        "b": discovery.PodInfo("A100-40GB", 1, "llama-3.1-8b"),
    }
    slices = [
        _slice(_ep("10.0.0.1", "a", ready=True), _ep("10.0.0.2", "b", ready=False)),
        _slice(_ep("10.0.0.3", "b", ready=True, terminating=True), _ep("10.0.0.4", "zz")),
        _slice(_ep("10.0.0.5", "b", ready=True)),
    ]
    found = discovery.endpoints_from_slices(cfg, slices, pods)
    assert [(e.id, e.gpu, e.tensor_parallel_size) for e in found] == [
        ("http://10.0.0.1:8000", "B200", 2),
        ("http://10.0.0.5:8000", "A100-40GB", 1),
    ]


def _owned(
    labels: dict[str, str],
    *,
    owner: str = "p-v-abc",
    controller: bool = True,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Metadata of a pod of pool p, variant v, made by ReplicaSet ``owner``."""
    return {
        "labels": {"gpufleet.io/pool": "p", "gpufleet.io/variant": "v",
                   "pod-template-hash": "abc", **labels},
        "annotations": annotations or {},
        "owner_references": [{"kind": "ReplicaSet", "name": owner, "controller": controller}],
    }  # fmt: skip


H200_TP4 = {"gpufleet.io/gpu": "H200", "gpufleet.io/tensor-parallel-size": "4"}


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (_owned(H200_TP4, annotations={"gpufleet.io/model": "m"}),
         discovery.PodInfo("H200", 4, "m", "p")),
        (_owned({"gpufleet.io/gpu": "H200"}), discovery.PodInfo("H200", 1, "", "p")),
        (_owned({"gpufleet.io/gpu": "H200"}, annotations={"gpufleet.io/cost-per-gpu-hour": "2.5"}),
         discovery.PodInfo("H200", 1, "", "p", 2.5)),
        (_owned({"gpufleet.io/gpu": "H200"}, annotations={"gpufleet.io/cost-per-gpu-hour": "-1"}),
         discovery.PodInfo("H200", 1, "", "p", None)),
        (_owned({"gpufleet.io/gpu": "TPU"}), None),
        (_owned({}), None),
        # Not made by the pool's own Deployment: copied labels are not enough.
        (_owned(H200_TP4, owner="someone-else-abc"), None),
        (_owned(H200_TP4, controller=False), None),
        ({"labels": _owned(H200_TP4)["labels"]}, None),
    ],
)  # fmt: skip
def test_pod_info(meta: dict[str, Any], expected: discovery.PodInfo | None) -> None:
    assert discovery.pod_info({"metadata": meta}) == expected


_DISRUPTED = {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}


@pytest.mark.parametrize(
    ("labels", "annotations", "conditions", "capacity", "interruption"),
    [
        ({}, {}, [], "on-demand", ""),
        ({"gpufleet.io/capacity-type": "spot"}, {}, [], "spot", ""),
        ({"gpufleet.io/capacity-type": "preemptible"}, {}, [], "on-demand", ""),
        ({}, {"gpufleet.io/interruption": "spot-itn"}, [], "on-demand", "spot-itn"),
        ({}, {"gpufleet.io/interruption": ""}, [], "on-demand", "marked"),
        ({}, {}, [_DISRUPTED], "on-demand", "TerminationByKubelet"),
        ({}, {}, [{**_DISRUPTED, "status": "False"}], "on-demand", ""),
    ],
)
def test_pod_info_capacity_type_and_interruption(
    labels: dict[str, str],
    annotations: dict[str, str],
    conditions: list[dict[str, str]],
    capacity: str,
    interruption: str,
) -> None:
    meta = _owned({"gpufleet.io/gpu": "H200", **labels}, annotations=annotations)
    info = discovery.pod_info({"metadata": meta, "status": {"conditions": conditions}})
    assert info is not None
    assert (info.capacity_type, info.interruption) == (capacity, interruption)


def _pod(
    ip: str | None,
    *,
    gpu: str = "H100-80GB",
    ready: str = "True",
    phase: str = "Running",
    deleting: bool = False,
    ports: tuple[tuple[str, int], ...] = (("metrics", 9400), ("http", 8000)),
    owner: str = "p-v-abc",
) -> dict[str, Any]:
    meta = _owned({"gpufleet.io/gpu": gpu}, owner=owner)
    if deleting:
        meta["deletion_timestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"ports": [{"name": n, "container_port": p} for n, p in ports]}]},
        "status": {
            "phase": phase,
            "pod_ip": ip,
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (_pod("127.64.0.1"), ["http://127.64.0.1:8000"]),
        (_pod("127.64.0.1", ports=(("api", 9000),)), ["http://127.64.0.1:9000"]),
        (_pod("127.64.0.1", ready="False"), []),
        (_pod("127.64.0.1", phase="Pending"), []),
        (_pod("127.64.0.1", deleting=True), []),
        (_pod(None), []),
        (_pod("127.64.0.1", gpu="TPU"), []),
        (_pod("127.64.0.1", ports=()), []),
        (_pod("127.64.0.1", owner="p-other-abc"), []),
    ],
)
def test_endpoints_from_pods_ready_and_not_terminating(
    pod: dict[str, Any], expected: list[str]
) -> None:
    cfg = config.parse(
        {"kubernetes": {"namespace": "ns", "source": "pods"}, "policy": {"pools": ["p"]}}
    )
    assert [e.id for e in discovery.endpoints_from_pods(cfg, [pod])] == expected


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("4096", 4096),  # the operator's plan, read as published
        (None, discovery.kv_capacity("llama-3.1-8b", "H200", 1)),  # not yet: planned here
        ("-1", discovery.kv_capacity("llama-3.1-8b", "H200", 1)),
        ("lots", discovery.kv_capacity("llama-3.1-8b", "H200", 1)),
    ],
)
def test_kv_capacity_is_the_operators_plan_when_the_pod_carries_it(
    annotation: str | None, expected: int
) -> None:
    annotations = {"gpufleet.io/model": "llama-3.1-8b"}
    if annotation is not None:
        annotations[contract.KV_CACHE_TOKENS_ANNOTATION] = annotation
    pod = _pod("10.0.0.7", gpu="H200")
    pod["metadata"]["annotations"] = annotations
    cfg = config.parse(
        {"kubernetes": {"namespace": "ns", "source": "pods"}, "policy": {"pools": ["p"]}}
    )
    (found,) = discovery.endpoints_from_pods(cfg, [pod])
    assert found.kv_capacity_tokens == expected
    assert expected > 0


def test_unknown_discovery_source_is_named() -> None:
    with pytest.raises(config.ConfigError, match=r"kubernetes\.source"):
        config.parse(
            {"kubernetes": {"namespace": "ns", "source": "dns"}, "policy": {"pools": ["p"]}}
        )


KUBE = {"namespace": "ns", "pools": ["a", "b"], "configMap": "p-router", "policyName": "p"}
TENANTS = {
    "admission": {
        "tenants": [{"name": "acme", "apiKeySecretRef": {"name": "acme-key", "key": "token"}}]
    }
}
SECRET_KEY = {"acme": {"secret": {"name": "acme-key", "key": "token"}}}


def test_policy_rendered_by_the_operator() -> None:
    cfg = config.parse({"kubernetes": KUBE, "policyGeneration": 7, "policy": TENANTS,
                        "apiKeys": SECRET_KEY, "prometheusCaFile": "/etc/ca.crt"})  # fmt: skip
    assert cfg.kubernetes is not None and cfg.kubernetes.pools == ("a", "b")
    assert (cfg.kubernetes.config_map, cfg.kubernetes.policy_name) == ("p-router", "p")
    assert cfg.policy_generation == 7 and str(cfg.prometheus_ca_file) == "/etc/ca.crt"
    assert cfg.secret_names() == {"acme-key"}
    assert cfg.keys({"acme-key": {"token": "czNjcjN0LWtleQ=="}}) == {"acme": "s3cr3t-key"}


@pytest.mark.parametrize(
    ("secrets", "fragment"),
    [
        ({}, "apiKeys.acme.secret: Secret acme-key not found"),
        ({"acme-key": {"other": "eA=="}}, "apiKeys.acme.secret: Secret acme-key has no key token"),
        ({"acme-key": {"token": "!!"}}, "apiKeys.acme.secret: the value is not base64"),
        ({"acme-key": {"token": ""}}, "apiKeys.acme: the key is empty"),
    ],
)
def test_secret_key_errors_name_the_tenant(secrets: Any, fragment: str) -> None:
    cfg = config.parse({"kubernetes": KUBE, "policy": TENANTS, "apiKeys": SECRET_KEY})
    with pytest.raises(config.ConfigError, match=fragment.replace(".", r"\.")):
        cfg.keys(secrets)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"backends": [BACKEND], "policy": TENANTS, "apiKeys": SECRET_KEY},
         "a secret key source needs kubernetes"),
        ({"kubernetes": {**KUBE, "configMap": "Bad_Name"}, "policy": {}},
         "kubernetes.configMap"),
        ({"kubernetes": {**KUBE, "pools": ["a/b"]}, "policy": {}}, "kubernetes.pools.0"),
        ({"kubernetes": KUBE, "policy": {}, "policyGeneration": -1}, "policyGeneration"),
        ({"kubernetes": KUBE, "policy": TENANTS,
          "apiKeys": {"acme": {"secret": {"name": "s"}}}}, "apiKeys.acme.secret.key"),
        ({"kubernetes": KUBE, "policy": TENANTS,
          "apiKeys": {"acme": {"env": "X", "secret": {"name": "s", "key": "k"}}}},
         "exactly one of value, env, file, secret"),
    ],
)  # fmt: skip
def test_new_keys_errors_name_the_key(raw: Any, fragment: str) -> None:
    with pytest.raises(config.ConfigError, match=fragment.replace(".", r"\.")):
        config.parse(raw)
