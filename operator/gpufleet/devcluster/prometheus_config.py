"""What the dev cluster's Prometheus scrapes and may read, rendered (pure).

Two scrape jobs find pods by Kubernetes service discovery (role ``pod``), as a real
cluster's Prometheus does:

- ``kubernetes-pods``: pods annotated ``prometheus.io/scrape: "true"``, scraped at
  ``<pod IP>:<prometheus.io/port>`` and path ``prometheus.io/path`` — the convention the
  operator's pod template follows.
- ``gpu``: DCGM-exporter metrics of the simulated GPUs at
  ``<pod IP>:GPU_METRICS_PORT/metrics`` for every pod labelled ``gpufleet.io/gpu``. It
  stands in for the DCGM exporter DaemonSet, whose series carry the pod they belong to.

Both keep only Running pods, copy the pod's labels, and add ``namespace``, ``pod``,
``pod_ip`` and ``node``; ``instance`` stays the scraped ``<pod IP>:<port>``, which is how
the router maps series to endpoints. Prometheus reads pods as ``certs.PROMETHEUS``'s
user, bound to a ClusterRole that may only get, list and watch pods.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

import yaml

from gpufleet import labels

# dcgm-exporter listens on :9400 by default (NVIDIA/dcgm-exporter README, `-a :9400`);
# the twin's simulators serve their GPU metrics there at the pod IP.
GPU_METRICS_PORT = 9400
SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"

SCRAPE_INTERVAL = "2s"
SCRAPE_TIMEOUT = "1s"
EVALUATION_INTERVAL = "2s"
RETENTION = "2h"

POD_JOB = "kubernetes-pods"
GPU_JOB = "gpu"
ROLE_NAME = "gpufleet:dev-prometheus"

Action = Literal["replace", "keep", "drop", "labelmap"]


class RelabelRule(TypedDict):
    action: Action
    source_labels: NotRequired[list[str]]
    regex: NotRequired[str]
    target_label: NotRequired[str]
    replacement: NotRequired[str]


class KubernetesSd(TypedDict):
    role: Literal["pod"]
    kubeconfig_file: str


class ScrapeConfig(TypedDict):
    job_name: str
    metrics_path: str
    kubernetes_sd_configs: list[KubernetesSd]
    relabel_configs: list[RelabelRule]


class GlobalConfig(TypedDict):
    scrape_interval: str
    scrape_timeout: str
    evaluation_interval: str


class Retention(TypedDict):
    time: str


class Tsdb(TypedDict):
    retention: Retention


class Storage(TypedDict):
    tsdb: Tsdb


# "global" is a Python keyword, hence the functional form.
PrometheusConfig = TypedDict(
    "PrometheusConfig",
    {"global": GlobalConfig, "storage": Storage, "scrape_configs": list[ScrapeConfig]},
)


def meta_label(kind: Literal["annotation", "label", "labelpresent"], key: str) -> str:
    """The discovery meta label of a pod annotation or label (``a.b/c`` → ``a_b_c``)."""
    return f"__meta_kubernetes_pod_{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', key)}"


def _keep(source: str, regex: str) -> RelabelRule:
    return {"action": "keep", "source_labels": [source], "regex": regex}


def _copy(source: str, target: str) -> RelabelRule:
    return {"action": "replace", "source_labels": [source], "target_label": target}


def _pod_labels() -> list[RelabelRule]:
    """Running pods only; the pod's own labels, then where it runs (these win)."""
    return [
        _keep("__meta_kubernetes_pod_phase", "Running"),
        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
        _copy("__meta_kubernetes_namespace", "namespace"),
        _copy("__meta_kubernetes_pod_name", "pod"),
        _copy("__meta_kubernetes_pod_ip", "pod_ip"),
        _copy("__meta_kubernetes_pod_node_name", "node"),
    ]


def _job(name: str, kubeconfig: Path, rules: list[RelabelRule]) -> ScrapeConfig:
    return {
        "job_name": name,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [*rules, *_pod_labels()],
    }


def annotated_pods_job(kubeconfig: Path) -> ScrapeConfig:
    """Pods that ask to be scraped with the ``prometheus.io/*`` annotations."""
    return _job(
        POD_JOB,
        kubeconfig,
        [
            _keep(meta_label("annotation", SCRAPE_ANNOTATION), "true"),
            {
                "action": "replace",
                "source_labels": [meta_label("annotation", PATH_ANNOTATION)],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "action": "replace",
                "source_labels": [
                    "__meta_kubernetes_pod_ip",
                    meta_label("annotation", PORT_ANNOTATION),
                ],
                "regex": r"(.+);(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
        ],
    )


def gpu_job(kubeconfig: Path) -> ScrapeConfig:
    """Every pod labelled with a GPU generation, at its pod IP's GPU metrics port."""
    return _job(
        GPU_JOB,
        kubeconfig,
        [
            _keep(meta_label("labelpresent", labels.GPU), "true"),
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_pod_ip"],
                "regex": "(.+)",
                "replacement": f"$1:{GPU_METRICS_PORT}",
                "target_label": "__address__",
            },
        ],
    )


def config(*, kubeconfig: Path) -> PrometheusConfig:
    """The whole configuration; Prometheus talks to the API server with ``kubeconfig``."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_TIMEOUT,
            "evaluation_interval": EVALUATION_INTERVAL,
        },
        "storage": {"tsdb": {"retention": {"time": RETENTION}}},
        "scrape_configs": [annotated_pods_job(kubeconfig), gpu_job(kubeconfig)],
    }


def render(*, kubeconfig: Path) -> str:
    """``config`` as the YAML Prometheus reads from ``--config.file``."""
    return yaml.safe_dump(config(kubeconfig=kubeconfig), sort_keys=False)


class PolicyRule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


class ClusterRole(TypedDict):
    apiVersion: str
    kind: Literal["ClusterRole"]
    metadata: dict[str, str]
    rules: list[PolicyRule]


class RoleRef(TypedDict):
    apiGroup: str
    kind: Literal["ClusterRole"]
    name: str


class Subject(TypedDict):
    apiGroup: str
    kind: Literal["User"]
    name: str


class ClusterRoleBinding(TypedDict):
    apiVersion: str
    kind: Literal["ClusterRoleBinding"]
    metadata: dict[str, str]
    roleRef: RoleRef
    subjects: list[Subject]


_RBAC = "rbac.authorization.k8s.io"


def cluster_role() -> ClusterRole:
    """Read pods, nothing else: the ``pod`` role attaches no node or namespace metadata."""
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def cluster_role_binding(user: str) -> ClusterRoleBinding:
    """Binds ``cluster_role`` to the user a client certificate names."""
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE_NAME},
        "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": ROLE_NAME},
        "subjects": [{"apiGroup": _RBAC, "kind": "User", "name": user}],
    }
