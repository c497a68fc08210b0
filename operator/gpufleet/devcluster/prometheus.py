"""The dev cluster's Prometheus: its config file, its access to pods, where it answers.

``prepare`` runs once the API server is up and before Prometheus starts: it writes the
configuration rendered by ``prometheus_config`` and binds Prometheus's certificate user
to the pods-only ClusterRole, using the admin kubeconfig. Both steps are idempotent (an
existing role or binding is left as it is). Starting and stopping the process is the
cluster's business, like every other component's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufleet.devcluster import certs, components, nodes, prometheus_config


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def ready_url(port: int) -> str:
    """Answers 200 once the TSDB is open and the configuration is loaded."""
    return f"{url(port)}/-/ready"


def write_config(layout: components.Layout) -> Path:
    """Write the configuration; discovery reads pods with Prometheus's own kubeconfig."""
    text = prometheus_config.render(kubeconfig=layout.kubeconfig(certs.PROMETHEUS.file_stem))
    layout.prometheus_config.write_text(text)
    return layout.prometheus_config


def _created(create: Callable[[], object]) -> None:
    """Run a create call; AlreadyExists (409) counts as done."""
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise


def grant_pod_access(admin_kubeconfig: Path) -> None:
    """Let ``certs.PROMETHEUS``'s user get, list and watch pods, and nothing more."""
    role = prometheus_config.cluster_role()
    binding = prometheus_config.cluster_role_binding(certs.PROMETHEUS.user)
    with nodes.api_client(admin_kubeconfig) as api:
        rbac = client.RbacAuthorizationV1Api(api)
        _created(lambda: rbac.create_cluster_role(role))  # type: ignore[arg-type]
        _created(lambda: rbac.create_cluster_role_binding(binding))  # type: ignore[arg-type]


def prepare(layout: components.Layout, *, admin_kubeconfig: Path) -> None:
    """Everything Prometheus needs before it starts (see the module docstring)."""
    write_config(layout)
    grant_pod_access(admin_kubeconfig)
