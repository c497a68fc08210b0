"""A RoutingPolicy on the twin: the operator renders its router, the router pod serves the
pools it names, the status reports what the router runs, and edits apply live.

The example pools (``examples/modelpool-*.yaml``, trimmed to the dev cluster's fleet: no
L4 nodes, no region label) load as simulators; the operator runs as its least-privilege
ServiceAccount (so it can only create the router's Role because it holds every
permission the Role grants) with a 2 s policy poll. Routers discover pods by watching
them: the twin's pods have loopback addresses (127.83.x.x), which the API server does
not allow in an EndpointSlice, so the twin's slices stay empty.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
POLICY = "mixed-fleet"
ROUTER = labels.router_name(POLICY)
PLURAL = "routingpolicies"
MODELS = {"llama-70b": "meta-llama/Llama-3.1-70B-Instruct", "llama-8b": "llama-3.1-8b-instruct"}
KINDS = ("ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
         "PodDisruptionBudget")  # fmt: skip


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    extra = ("--router-discovery", "pods", "--policy-poll-seconds", "2")
    op = Operator(
        operator_kubeconfig, tmp_path / "operator.log", namespaces=(namespace,), extra=extra
    )
    try:
        yield op.start()
    finally:
        op.stop()


def _example(name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "examples" / name).read_text())
    return next(d for d in docs if d and d["kind"] in ("ModelPool", "RoutingPolicy"))


def _pools() -> list[dict[str, Any]]:
    large, small = _example("modelpool-llama-3.1-70b.yaml"), _example("modelpool-llama-3.1-8b.yaml")
    large["spec"]["variants"] = [v | {"minReplicas": 1} for v in large["spec"]["variants"][:1]]
    small["spec"].pop("placement")
    small["spec"]["variants"] = [
        v | {"minReplicas": 1} for v in small["spec"]["variants"] if v["name"] == "l40s"
    ]
    return [large, small]


def _policy() -> dict[str, Any]:
    policy = _example("routingpolicy-mixed-fleet.yaml")
    spec = policy["spec"]
    for key in ("admission", "prometheus", "failureHandling"):
        spec.pop(key)  # keys, an unreachable Prometheus: not what this test is about
    spec["router"] = {"replicas": 1, "resources": {"requests": {"cpu": "100m"}}}
    return policy


def _custom(cluster: LocalCluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def _get_policy(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = _custom(cluster).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, POLICY
    )
    return found


def _patch_spec(cluster: LocalCluster, namespace: str, spec: dict[str, Any]) -> int:
    out = _custom(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, POLICY, {"spec": spec}
    )
    return int(out["metadata"]["generation"])


def _children(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in KINDS:
        done = cluster.kubectl("get", kind.lower(), ROUTER, "-n", namespace, "-o", "json",
                               check=False)  # fmt: skip
        if done.returncode == 0:
            out[kind] = json.loads(done.stdout)
    return out


def _router_pod(cluster: LocalCluster, namespace: str) -> client.V1Pod | None:
    selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(POLICY).items())
    pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(
        namespace, label_selector=selector
    )
    ready = [
        p for p in pods.items
        if p.status.pod_ip and any(c.type == "Ready" and c.status == "True"
                                   for c in p.status.conditions or ())
    ]  # fmt: skip
    return ready[0] if len(ready) == 1 and len(pods.items) == 1 else None


def _prices(cluster: LocalCluster, namespace: str) -> dict[str, set[str | None]]:
    """The price annotation of each pool's pods, by pool."""
    selector = f"{labels.COMPONENT}={labels.MODEL_SERVER}"
    pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(
        namespace, label_selector=selector
    )
    out: dict[str, set[str | None]] = {}
    for pod in pods.items:
        price = (pod.metadata.annotations or {}).get(labels.COST_ANNOTATION)
        out.setdefault(pod.metadata.labels[labels.POOL], set()).add(price)
    return out


def _chat(ip: str, model: str, key: str | None = None) -> tuple[int, dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"http://{ip}:8080/v1/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
            return int(resp.status), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _status(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return dict(_get_policy(cluster, namespace).get("status") or {})


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def _apply_fleet(
    cluster: LocalCluster, namespace: str, policy: dict[str, Any] | None = None
) -> None:
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace,
                    "--from-literal=token=x")  # fmt: skip
    docs = [*_pools(), policy or _policy()]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


@pytest.mark.timeout(240)
def test_policy_renders_a_router_that_serves_both_pools_and_applies_edits_live(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    started = time.monotonic()
    _apply_fleet(cluster, namespace)
    children = until("every router child", lambda: (c := _children(cluster, namespace))
                     and len(c) == len(KINDS) and c, timeout=60)  # fmt: skip
    uid = _get_policy(cluster, namespace)["metadata"]["uid"]
    for kind, body in children.items():
        (owner,) = body["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("RoutingPolicy", uid, True)
        assert body["metadata"]["labels"][labels.ROUTING_POLICY] == POLICY, kind
    pod = until("the router pod Ready", lambda: _router_pod(cluster, namespace), timeout=90)
    ready_after = time.monotonic() - started
    ip = pod.status.pod_ip

    def serves_both() -> bool:
        return all(_chat(ip, m)[0] == 200 for m in MODELS.values())

    until("both pools' models served through the router", serves_both, timeout=90)
    until("each model-server pod priced", lambda: _prices(cluster, namespace) == {
        "llama-70b": {"3.8"}, "llama-8b": {"1.9"}}, timeout=30)  # fmt: skip
    assert _chat(ip, "llama-small")[0] == 200, "an alias of the policy"

    def applied() -> dict[str, Any] | None:
        status = _status(cluster, namespace)
        generation = _get_policy(cluster, namespace)["metadata"]["generation"]
        ok = status.get("routers") == 1 and status.get("appliedGeneration") == generation
        ready = {(b["pool"], b["gpu"]) for b in status.get("backends", ()) if b["readyEndpoints"]}
        ok = ok and ready == {("llama-70b", "H200"), ("llama-8b", "L40S")}
        return status if ok and _condition(status, "Ready").get("status") == "True" else None

    # The status trails the router by up to one poll: wait for it to show both pools.
    status = until("status: one router, the generation applied, both backends, Ready",
                   applied, timeout=30)  # fmt: skip
    assert sorted(status["pools"]) == sorted(MODELS)
    assert [b["readyEndpoints"] for b in status["backends"]] == [1, 1]

    # A scorer weight and a new alias: applied by the running router, not a new one.
    before = (pod.metadata.uid, pod.status.container_statuses[0].restart_count)
    spec = copy.deepcopy(_get_policy(cluster, namespace)["spec"])
    spec["scorerWeights"]["load"] = 3.0
    spec["modelAliases"].append({"name": "llama-tiny", "model": MODELS["llama-8b"]})
    edited = time.monotonic()
    generation = _patch_spec(cluster, namespace, spec)
    until("the edit applied by the router", lambda: _status(cluster, namespace).get(
        "appliedGeneration") == generation, timeout=15, every=0.1)  # fmt: skip
    apply_seconds = time.monotonic() - edited
    assert _chat(ip, "llama-tiny")[0] == 200
    now = _router_pod(cluster, namespace)
    assert now is not None
    assert (now.metadata.uid, now.status.container_statuses[0].restart_count) == before
    print(f"\napply → router Ready {ready_after:.1f}s; edit → applied {apply_seconds:.1f}s")
    assert apply_seconds < 5.0 + 2.0, "within the router's reload and one status poll"

    # Deleting the policy deletes every child (the garbage collector follows the owner).
    _custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, POLICY)
    until("every router child gone", lambda: not _children(cluster, namespace), timeout=60)


@pytest.mark.timeout(180)
def test_invalid_edit_keeps_the_last_good_config_and_sidecar_mode_drops_the_deployment(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _apply_fleet(cluster, namespace)
    until("the ConfigMap", lambda: "ConfigMap" in _children(cluster, namespace), timeout=60)
    good = _children(cluster, namespace)["ConfigMap"]["data"]
    # Drift: an out-of-band edit of the router's configuration is put back.
    cluster.kubectl("patch", "configmap", ROUTER, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"data": {"router.yaml": "{}"}}))  # fmt: skip
    until("the edited ConfigMap repaired", lambda: _config_data(cluster, namespace) == good,
          timeout=15)  # fmt: skip
    spec = copy.deepcopy(_get_policy(cluster, namespace)["spec"])
    spec.pop("pools")
    spec["poolSelector"] = {"matchExpressions": [{"key": "gpufleet.io/tier", "operator": "In",
                                                  "values": []}]}  # fmt: skip
    replace_spec(cluster, namespace, PLURAL, POLICY, spec)

    def degraded() -> dict[str, Any]:
        return _condition(_status(cluster, namespace), "Degraded")

    cond = until("Degraded", lambda: degraded().get("status") == "True" and degraded(), timeout=30)
    assert "poolSelector.matchExpressions[0].values" in cond["message"]
    assert _children(cluster, namespace)["ConfigMap"]["data"] == good

    spec["poolSelector"]["matchExpressions"][0]["values"] = ["small", "large"]
    spec["router"]["mode"] = "sidecar"
    replace_spec(cluster, namespace, PLURAL, POLICY, spec)
    wanted = {"ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
    until("only the sidecar's children", lambda: set(_children(cluster, namespace)) == wanted,
          timeout=30)  # fmt: skip
    assert sorted(_routed(cluster, namespace)) == sorted(MODELS)

    # Relabelling a pool re-resolves the selector: the ConfigMap follows the labels.
    cluster.kubectl("label", "modelpool", "llama-8b", "-n", namespace, "--overwrite",
                    "gpufleet.io/tier=medium")  # fmt: skip
    until("llama-8b no longer routed", lambda: _routed(cluster, namespace) == ["llama-70b"],
          timeout=15)  # fmt: skip


def _config_data(cluster: LocalCluster, namespace: str) -> dict[str, str]:
    return dict(_children(cluster, namespace)["ConfigMap"]["data"])


def _routed(cluster: LocalCluster, namespace: str) -> list[str]:
    text = _children(cluster, namespace)["ConfigMap"]["data"]["router.yaml"]
    return list(yaml.safe_load(text)["kubernetes"]["pools"])


def _tenant_secret(cluster: LocalCluster, namespace: str, key: str) -> None:
    secret = cluster.kubectl("create", "secret", "generic", "tenant-acme", "-n", namespace,
                             f"--from-literal=api-key={key}", "--dry-run=client",
                             "-o", "yaml")  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=secret.stdout)


def _as_router(cluster: LocalCluster, namespace: str, *argv: str) -> tuple[bool, str]:
    """``kubectl`` with the router pod's own credentials (its ServiceAccount token, as
    the twin mounts it): (allowed, output)."""
    from gpufleet.devcluster import twin

    (folder,) = (cluster.handle.layout.root / twin.PODS_DIR).glob(f"{namespace}_{ROUTER}-*")
    done = cluster.kubectl("--kubeconfig", str(folder / "kubeconfig"), "-n", namespace, *argv,
                           check=False)  # fmt: skip
    return done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(240)
def test_tenant_keys_come_from_their_secret_live_and_the_router_holds_only_its_role(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    policy = _policy()
    policy["spec"]["admission"] = {
        "requireApiKey": True,
        "tenants": [{"name": "acme", "apiKeySecretRef": {"name": "tenant-acme", "key": "api-key"}}],
    }
    _tenant_secret(cluster, namespace, "sk-acme-first-key")
    _apply_fleet(cluster, namespace, policy)
    pod = until("the router pod Ready", lambda: _router_pod(cluster, namespace), timeout=90)
    ip, model = pod.status.pod_ip, MODELS["llama-8b"]
    until("served with the tenant's key",
          lambda: _chat(ip, model, "sk-acme-first-key")[0] == 200, timeout=90)  # fmt: skip
    assert _chat(ip, model)[0] == 401, "a key is required"
    assert _chat(ip, model, "sk-not-a-tenant-key")[0] == 401

    # Rotating the key in the Secret: the router follows within 5 s, without a restart.
    before = (pod.metadata.uid, pod.status.container_statuses[0].restart_count)
    rotated = time.monotonic()
    _tenant_secret(cluster, namespace, "sk-acme-second-key")
    until("the new key accepted and the old one refused",
          lambda: _chat(ip, model, "sk-acme-second-key")[0] == 200
          and _chat(ip, model, "sk-acme-first-key")[0] == 401, timeout=5, every=0.1)  # fmt: skip
    print(f"\nSecret rotated → new key routed in {time.monotonic() - rotated:.2f}s")
    now = _router_pod(cluster, namespace)
    assert now is not None
    assert (now.metadata.uid, now.status.container_statuses[0].restart_count) == before

    # The router's own credentials: its ConfigMap and its tenants' Secrets by name, the
    # pods it routes to; nothing else.
    assert _as_router(cluster, namespace, "get", "secret", "tenant-acme")[0]
    assert _as_router(cluster, namespace, "get", "configmap", ROUTER)[0]
    assert _as_router(cluster, namespace, "get", "pods")[0]
    for argv in (("get", "secret", "hf-token"), ("get", "secrets"), ("get", "configmaps"),
                 ("get", "modelpools"), ("get", "routingpolicies"),
                 ("patch", "configmap", ROUTER, "-p", '{"data":{"x":"y"}}'),
                 ("delete", "pod", pod.metadata.name, "--dry-run=server")):  # fmt: skip
        allowed, output = _as_router(cluster, namespace, *argv)
        assert not allowed and "forbidden" in output.lower(), argv


@pytest.mark.timeout(120)
def test_a_name_another_owner_holds_is_reported_not_taken_over(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    # A Service of the router's name that is not the policy's: the operator must not
    # take it over (its selector would then route the user's traffic to the router).
    cluster.kubectl("create", "service", "clusterip", ROUTER, "-n", namespace,
                    "--tcp=9000:9000")  # fmt: skip
    policy = _policy()
    policy["spec"]["pools"] = ["not-yet-created"]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(policy))

    def degraded() -> dict[str, Any]:
        return _condition(_status(cluster, namespace), "Degraded")

    cond = until("Degraded", lambda: degraded().get("status") == "True" and degraded(), timeout=30)
    assert f"Service {ROUTER} already exists and is not gpufleet's" in cond["message"]
    service = _children(cluster, namespace)["Service"]
    assert "ownerReferences" not in service["metadata"]
    assert [p["port"] for p in service["spec"]["ports"]] == [9000]
    # Once the user removes theirs, the policy's Service is created and Degraded clears.
    cluster.kubectl("delete", "service", ROUTER, "-n", namespace)
    until("the policy's own Service", lambda: "ownerReferences" in _children(
        cluster, namespace).get("Service", {}).get("metadata", {}), timeout=30)  # fmt: skip
    until("Degraded cleared", lambda: degraded().get("status") == "False", timeout=30)
