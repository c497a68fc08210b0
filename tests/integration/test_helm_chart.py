"""charts/gpufleet: lint, a render the real API server accepts, the kustomize base from the
same source, and ``helm install`` into the twin, where the chart's operator pod runs as a
real ``gpufleet operator`` process and reconciles an example pool to Ready.

The install watches only the test's namespace (``operator.watchNamespaces``) and names
its cluster-scoped objects after the release, so it cannot reconcile other tests' pools
or collide with another operator's RBAC.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from gpufleet.devcluster import build
from tests.conftest import LocalCluster
from tests.integration import operator_harness
from tests.integration.operator_harness import GROUP, PLURAL, VERSION, condition
from tests.waiting import until

pytestmark = [pytest.mark.integration]

ROOT = pathlib.Path(__file__).parents[2]
CHART = ROOT / "charts" / "gpufleet"
POOL_FILE = ROOT / "examples" / "modelpool-llama-3.1-70b.yaml"
POLICY_FILE = ROOT / "examples" / "demo" / "routingpolicy.yaml"
HELM_ONLY_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart")


def _helm(*args: str, kubeconfig: pathlib.Path | None = None, timeout: float = 60) -> str:
    argv = [str(build.binary_path("helm")), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}{done.stdout}"
    return done.stdout


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    labels = doc["metadata"].get("labels") or {}
    for key in HELM_ONLY_LABELS:
        labels.pop(key, None)
    if not labels:
        doc["metadata"].pop("labels", None)
    return doc


def test_helm_lint_strict_passes() -> None:
    out = _helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


PACK_ON = ("--set", "monitoring.podMonitor.enabled=true",
           "--set", "monitoring.prometheusRule.enabled=true",
           "--set", "monitoring.grafanaDashboard.enabled=true")  # fmt: skip


def test_helm_lint_strict_passes_with_the_observability_pack_on() -> None:
    out = _helm("lint", "--strict", str(CHART), *PACK_ON)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_pack_renders_the_files_of_deploy_observability() -> None:
    """The PrometheusRule's spec is deploy/observability's rules file and the dashboard
    ConfigMap holds its JSON, unchanged (the alerts' {{ $labels }} are not templated)."""
    pack = ROOT / "deploy" / "observability"
    rendered = _helm("template", "obs", str(CHART), "-n", "mon", *PACK_ON,
                     "--set", "monitoring.grafanaDashboard.namespace=grafana",
                     "--set", "monitoring.prometheusRule.labels.release=kps")  # fmt: skip
    by_kind = {d["kind"]: d for d in _docs(rendered)}
    rule = by_kind["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load((pack / "gpufleet-rules.yaml").read_text())
    assert "{{ $labels.pod }}" in json.dumps(rule["spec"])
    dashboard = by_kind["ConfigMap"]
    assert (
        dashboard["metadata"]["namespace"],
        dashboard["metadata"]["labels"]["grafana_dashboard"],
    ) == ("grafana", "1")
    text = (pack / "gpufleet-dashboard.json").read_text()
    assert dashboard["data"]["gpufleet.json"] == text.rstrip("\n")
    endpoints = by_kind["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["http", "gpu-agent"]


def test_helm_refuses_values_the_schema_does_not_allow() -> None:
    argv = [str(build.binary_path("helm")), "template", "x", str(CHART)]
    done = subprocess.run([*argv, "--set", "operator.routerDiscovery=dns"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "routerDiscovery" in done.stderr


def test_the_autoscaler_settings_reach_the_operator() -> None:
    """operator.prometheus, gpuAgentImage and the log settings become the operator's
    flags; a CA ConfigMap is mounted read-only where --prometheus-ca-file points."""
    rendered = _helm("template", "as", str(CHART),
                     "--set", "operator.prometheus.url=https://prom.monitoring:9090",
                     "--set", "operator.prometheus.caConfigMap.name=prom-ca",
                     "--set", "operator.autoscaleSeconds=30",
                     "--set", "operator.gpuAgentImage=registry.example/gpufleet:1.2",
                     "--set", "operator.logFormat=json")  # fmt: skip
    (deployment,) = [d for d in _docs(rendered) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert {"--prometheus-url=https://prom.monitoring:9090", "--autoscale-seconds=30",
            "--prometheus-ca-file=/etc/gpufleet/prometheus-ca/ca.crt",
            "--gpu-agent-image=registry.example/gpufleet:1.2", "--log-format=json",
            "--log-level=INFO"} <= set(args)  # fmt: skip
    assert "--prometheus-insecure-skip-verify" not in args
    assert {"name": "prometheus-ca", "mountPath": "/etc/gpufleet/prometheus-ca",
            "readOnly": True} in container["volumeMounts"]  # fmt: skip
    assert {"name": "prometheus-ca", "configMap": {"name": "prom-ca"}} in pod["volumes"]
    default = _helm("template", "as", str(CHART))
    (plain,) = [d for d in _docs(default) if d["kind"] == "Deployment"]
    plain_args = plain["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--prometheus") for a in plain_args)


def _operator_args(rendered: str) -> list[str]:
    (deployment,) = [d for d in _docs(rendered) if d["kind"] == "Deployment"]
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_the_network_policy_switch_reaches_the_operator() -> None:
    """networkPolicy.enabled: the operator's NetworkPolicy and the scraper flags, or
    neither and --no-network-policies; prometheus.allowLocal its flag."""
    on = _helm("template", "np", str(CHART),
               "--set", "networkPolicy.metricsScraper.namespace=obs",
               "--set", "operator.prometheus.allowLocal=true")  # fmt: skip
    assert [d["kind"] for d in _docs(on)].count("NetworkPolicy") == 1
    wanted = {"--metrics-scraper-namespace=obs", "--allow-local-prometheus",
              "--metrics-scraper-label=app.kubernetes.io/name=prometheus"}  # fmt: skip
    assert wanted <= set(_operator_args(on))
    assert "--no-network-policies" not in _operator_args(on)
    off = _helm("template", "np", str(CHART), "--set", "networkPolicy.enabled=false")
    assert "NetworkPolicy" not in [d["kind"] for d in _docs(off)]
    assert "--no-network-policies" in _operator_args(off)
    assert "--allow-local-prometheus" not in _operator_args(off)


def test_a_prometheus_url_without_a_scheme_is_refused() -> None:
    argv = [str(build.binary_path("helm")), "template", "x", str(CHART)]
    done = subprocess.run([*argv, "--set", "operator.prometheus.url=prom:9090"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "prometheus" in done.stderr and "url" in done.stderr


@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_render_is_accepted_by_the_api_server(
    cluster: LocalCluster, crds: list[str], namespace: str, scope: str
) -> None:
    extra = ["--set", f"operator.watchNamespaces={{{namespace}}}"] if scope == "namespaced" else []
    rendered = _helm("template", f"dry-{scope}", str(CHART), "-n", namespace, *extra)
    kinds = sorted(d["kind"] for d in _docs(rendered))
    binding = "RoleBinding" if scope == "namespaced" else "ClusterRoleBinding"
    expected = ["ServiceAccount", "ClusterRole", binding, "Deployment", "NetworkPolicy"]
    assert kinds == sorted(expected)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(expected)


def test_kustomize_base_is_the_charts_default_render(cluster: LocalCluster) -> None:
    chart = _helm("template", "gpufleet", str(CHART), "-n", "gpufleet-system", "--include-crds")
    base = cluster.kubectl("kustomize", str(ROOT / "deploy")).stdout
    by_key = {(d["kind"], d["metadata"]["name"]): _without_helm_labels(d) for d in _docs(chart)}
    from_base = {(d["kind"], d["metadata"]["name"]): _without_helm_labels(d) for d in _docs(base)}
    namespace = from_base.pop(("Namespace", "gpufleet-system"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert from_base.keys() == by_key.keys()
    for key, doc in by_key.items():
        if key[0] in ("ClusterRole", "ServiceAccount", "ClusterRoleBinding"):
            assert from_base[key].get("rules") == doc.get("rules"), key
            assert from_base[key].get("subjects") == doc.get("subjects"), key
        else:
            assert from_base[key] == doc, key


@pytest.fixture
def release(cluster: LocalCluster, namespace: str) -> Iterator[str]:
    name = f"gf-{namespace[2:]}"
    yield name
    _helm("uninstall", name, "-n", namespace, "--wait", kubeconfig=cluster.kubeconfig)


def _pool_ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    pool = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return condition(pool, "Ready").get("status") == "True"


def _chat(url: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(resp.status)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_helm_install_runs_the_operator_which_makes_an_example_pool_ready(
    cluster: LocalCluster, namespace: str, release: str
) -> None:
    started = time.monotonic()
    _helm(
        "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "90s",
        "--set", f"operator.watchNamespaces={{{namespace}}}",
        # The twin's pod IPs are loopback addresses, which EndpointSlices refuse.
        "--set", "operator.routerDiscovery=pods",
        "--set", "operator.resyncSeconds=10",
        # The demo policy's Prometheus is the dev cluster's, on loopback.
        "--set", "operator.prometheus.allowLocal=true",
        kubeconfig=cluster.kubeconfig, timeout=120,
    )  # fmt: skip
    installed = time.monotonic() - started
    core = client.CoreV1Api(cluster.api_client)
    [operator_pod] = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release}"
    ).items
    assert operator_pod.spec.service_account_name == f"{release}-operator"
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace,
                    "--from-literal=token=hf_test")  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", str(POOL_FILE))
    custom = client.CustomObjectsApi(cluster.api_client)
    until("the example pool Ready", lambda: _pool_ready(custom, namespace, "llama-70b"),
          timeout=150, every=1.0)  # fmt: skip
    pool_ready = time.monotonic() - started
    # The demo's RoutingPolicy: the chart's operator deploys its router, which serves.
    prometheus = f"http://127.0.0.1:{cluster.handle.ports.prometheus}"
    policy = POLICY_FILE.read_text(encoding="utf-8").replace("${PROMETHEUS_URL}", prometheus)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=policy)
    ip = until(
        "the router pod Ready",
        lambda: operator_harness.ready_router_ip(core, namespace),
        timeout=60,
    )
    assert _chat(f"http://{ip}:8080/v1/chat/completions", "llama-large") == 200
    print(f"helm install --wait {installed:.1f}s; install to pool Ready {pool_ready:.1f}s; "
          f"to a routed answer {time.monotonic() - started:.1f}s")  # fmt: skip
