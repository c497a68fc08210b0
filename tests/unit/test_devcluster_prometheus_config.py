"""The dev cluster's Prometheus configuration: which pods each job scrapes, where, and
with which labels; and the RBAC that lets it read pods and nothing else.

The relabeling is run here by a small evaluator of Prometheus's relabel semantics
(replace, keep, drop, labelmap on fully anchored regexes) over the meta labels that
Kubernetes pod discovery attaches; the integration test checks the same against the
real server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gpufleet.devcluster import certs, prometheus_config
from gpufleet.devcluster.prometheus_config import RelabelRule, ScrapeConfig

KUBECONFIG = Path("/clusters/x/kubeconfigs/prometheus.kubeconfig")
POD_IP = "127.77.0.9"


def _expand(template: str, match: re.Match[str]) -> str:
    return re.sub(r"\$(\d+)", lambda m: match.group(int(m.group(1))) or "", template)


def _relabel(labels: dict[str, str], rules: list[RelabelRule]) -> dict[str, str] | None:
    """Prometheus relabeling; None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        regex = re.compile(rule.get("regex", "(.*)"))
        if rule["action"] == "labelmap":
            for name, value in list(labels.items()):
                if match := regex.fullmatch(name):
                    labels[_expand(rule.get("replacement", "$1"), match)] = value
            continue
        value = ";".join(labels.get(s, "") for s in rule.get("source_labels", []))
        match = regex.fullmatch(value)
        if rule["action"] == "keep" and not match:
            return None
        if rule["action"] == "drop" and match:
            return None
        if rule["action"] == "replace" and match:
            labels[rule["target_label"]] = _expand(rule.get("replacement", "$1"), match)
    return labels


def _target(job: ScrapeConfig, meta: dict[str, str]) -> dict[str, str] | None:
    """The scraped target's labels (``__address__`` and ``__metrics_path__`` kept)."""
    start = {"__address__": POD_IP, "__metrics_path__": job["metrics_path"], **meta}
    labels = _relabel(start, job["relabel_configs"])
    if labels is None:
        return None
    kept = {k: v for k, v in labels.items() if not k.startswith("__meta_")}
    return {"instance": kept["__address__"], **kept}


def _pod(
    *,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, str]:
    """The meta labels Kubernetes pod discovery attaches to a pod without ports."""
    meta = {
        "__meta_kubernetes_namespace": "team-a",
        "__meta_kubernetes_pod_name": "llama-h100-0",
        "__meta_kubernetes_pod_ip": POD_IP,
        "__meta_kubernetes_pod_node_name": "kwok-h100-0",
        "__meta_kubernetes_pod_phase": phase,
    }
    for key, value in (labels or {}).items():
        meta[prometheus_config.meta_label("label", key)] = value
        meta[prometheus_config.meta_label("labelpresent", key)] = "true"
    for key, value in (annotations or {}).items():
        meta[prometheus_config.meta_label("annotation", key)] = value
    return meta


SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}
GPU = {"gpufleet.io/gpu": "H100-80GB", "app": "llama"}


@pytest.mark.parametrize(
    ("case", "pod", "address", "path"),
    [
        (
            "annotated, with a path",
            _pod(annotations={**SCRAPE, "prometheus.io/path": "/vllm"}, labels=GPU),
            f"{POD_IP}:8000",
            "/vllm",
        ),
        ("annotated, default path", _pod(annotations=SCRAPE), f"{POD_IP}:8000", "/metrics"),
        ("not annotated", _pod(labels=GPU), None, None),
        ("scrape false", _pod(annotations={**SCRAPE, "prometheus.io/scrape": "false"}), None, None),
        ("pending", _pod(phase="Pending", annotations=SCRAPE), None, None),
        ("succeeded", _pod(phase="Succeeded", annotations=SCRAPE), None, None),
    ],
)
def test_annotated_pods_job(
    case: str, pod: dict[str, str], address: str | None, path: str | None
) -> None:
    target = _target(prometheus_config.annotated_pods_job(KUBECONFIG), pod)
    if address is None:
        assert target is None, case
        return
    assert target is not None, case
    assert (target["__address__"], target["instance"]) == (address, address)
    assert target["__metrics_path__"] == path
    assert target["namespace"] == "team-a"
    assert target["pod"] == "llama-h100-0"
    assert target["pod_ip"] == POD_IP
    assert target["node"] == "kwok-h100-0"


@pytest.mark.parametrize(
    ("case", "pod", "scraped"),
    [
        ("GPU pod", _pod(labels=GPU), True),
        ("GPU pod, also annotated", _pod(labels=GPU, annotations=SCRAPE), True),
        ("CPU pod", _pod(labels={"app": "web"}, annotations=SCRAPE), False),
        ("GPU pod, pending", _pod(phase="Pending", labels=GPU), False),
        ("GPU pod, failed", _pod(phase="Failed", labels=GPU), False),
    ],
)
def test_gpu_job_scrapes_the_gpu_metrics_port_of_gpu_pods(
    case: str, pod: dict[str, str], scraped: bool
) -> None:
    target = _target(prometheus_config.gpu_job(KUBECONFIG), pod)
    assert (target is not None) == scraped, case
    if target is not None:
        assert target["instance"] == f"{POD_IP}:{prometheus_config.GPU_METRICS_PORT}"
        assert target["__metrics_path__"] == "/metrics"
        assert (target["pod"], target["namespace"], target["pod_ip"]) == (
            "llama-h100-0",
            "team-a",
            POD_IP,
        )


def test_pod_labels_are_copied_but_never_override_where_the_pod_runs() -> None:
    pod = _pod(labels={**GPU, "pod": "impostor", "namespace": "other"}, annotations=SCRAPE)
    target = _target(prometheus_config.annotated_pods_job(KUBECONFIG), pod)
    assert target is not None
    assert target["gpufleet_io_gpu"] == "H100-80GB"
    assert target["app"] == "llama"
    assert (target["pod"], target["namespace"]) == ("llama-h100-0", "team-a")


def test_both_jobs_discover_pods_through_prometheus_own_kubeconfig() -> None:
    doc = yaml.safe_load(prometheus_config.render(kubeconfig=KUBECONFIG))
    assert [j["job_name"] for j in doc["scrape_configs"]] == ["kubernetes-pods", "gpu"]
    for job in doc["scrape_configs"]:
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": str(KUBECONFIG)}]
    assert doc["storage"]["tsdb"]["retention"]["time"] == "2h"


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def test_scrapes_are_frequent_and_time_out_before_the_next_one() -> None:
    settings = prometheus_config.config(kubeconfig=KUBECONFIG)["global"]
    interval = _seconds(settings["scrape_interval"])
    assert interval <= 2
    assert _seconds(settings["scrape_timeout"]) < interval
    assert _seconds(settings["evaluation_interval"]) <= 2


def test_rbac_reads_pods_and_nothing_else() -> None:
    role = prometheus_config.cluster_role()
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = prometheus_config.cluster_role_binding(certs.PROMETHEUS.user)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "gpufleet-prometheus"}
    ]
    assert not certs.PROMETHEUS.groups, "no group: the binding is all it may do"
