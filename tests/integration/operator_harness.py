"""Running the operator under test: as a ServiceAccount bound only to its RBAC manifest.

``operator_identity`` (session) applies ``deploy/rbac/operator-rbac.yaml``, mints a token
for the ServiceAccount with the TokenRequest API and writes a kubeconfig that uses it,
with the cluster's server URL and CA. ``Operator`` starts ``gpufleet operator`` (or
``kopf run -m gpufleet.controller.handlers``) as a subprocess and always reaps it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from gpufleet.devcluster import build, kubeconfig
from gpufleet.devcluster import cluster as clusters
from gpufleet.ports import free_port
from tests.conftest import LocalCluster

ROOT = Path(__file__).parents[2]
RBAC = ROOT / "deploy" / "rbac" / "operator-rbac.yaml"
SA_NAMESPACE = "gpufleet-system"
SA_NAME = "gpufleet-operator"
BIN = Path(sys.executable).parent
GROUP, VERSION, PLURAL = "gpufleet.io", "v1alpha1", "modelpools"


def service_account_kubeconfig(handle: clusters.Cluster, api: client.ApiClient, path: Path) -> Path:
    """Apply the operator's RBAC (server-side), mint a 1-hour token and write a kubeconfig
    using it."""
    core = client.CoreV1Api(api)
    with contextlib.suppress(client.ApiException):
        core.create_namespace({"metadata": {"name": SA_NAMESPACE}})
    # Applied, not created: a reused dev cluster may hold an older version of the rules.
    kubectl = [str(build.binary_path("kubectl")), f"--kubeconfig={handle.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(RBAC)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    token = core.create_namespaced_service_account_token(
        SA_NAME, SA_NAMESPACE, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": handle.name,
                "cluster": {
                    "server": handle.server,
                    "certificate-authority": str(handle.layout.pki.ca_cert),
                },
            }
        ],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": "op", "context": {"cluster": handle.name, "user": SA_NAME}}],
        "current-context": "op",
    }
    return kubeconfig.write(path, yaml.safe_dump(doc))


class Operator:
    """One operator subprocess; ``start``/``kill``/``stop`` may be called repeatedly."""

    def __init__(
        self,
        kubeconfig_path: Path,
        log: Path,
        *,
        namespaces: tuple[str, ...] = (),
        resync_seconds: float = 2.0,
        via_kopf: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig_path
        self.log = log
        self.namespaces = namespaces
        self.resync_seconds = resync_seconds
        self.via_kopf = via_kopf
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def _argv(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        scope = [a for ns in self.namespaces for a in ("-n", ns)]
        if self.via_kopf:
            env["GPUFLEET_OPERATOR_RESYNC_SECONDS"] = str(self.resync_seconds)
            argv = [str(BIN / "kopf"), "run", "-m", "gpufleet.controller.handlers", "--standalone"]
            argv += ["--liveness", self.health_url]
            argv += scope or ["--all-namespaces"]
            return argv, env
        argv = [str(BIN / "gpufleet"), "operator", "--kubeconfig", str(self.kubeconfig)]
        argv += ["--resync-seconds", str(self.resync_seconds), "--liveness", self.health_url]
        return argv + scope + list(self.extra), env

    def start(self) -> Operator:
        argv, env = self._argv()
        out = self.log.open("ab")
        self._logs.append(out)
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        for out in self._logs:
            out.close()
        self._logs.clear()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running(operator: Operator) -> Iterator[Operator]:
    try:
        yield operator.start()
    finally:
        operator.stop()


def ready_router_ip(core: client.CoreV1Api, namespace: str) -> str | None:
    """The pod IP of a Ready router pod in ``namespace``, None while there is none."""
    pods = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=router"
    ).items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True"
                                    for c in p.status.conditions or [])]  # fmt: skip
    return str(ready[0].status.pod_ip) if ready else None


def get_pool(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(cluster.api_client)
    pool: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return pool


def condition(pool: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (pool.get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def replace_spec(
    cluster: LocalCluster, namespace: str, plural: str, name: str, spec: dict[str, Any]
) -> None:
    """Replace a custom object's whole spec (a merge patch would merge lists by name).

    The operator writes the object's status between our read and our write, so a 409
    Conflict means "read again", as client-go's ``RetryOnConflict`` does."""
    api = client.CustomObjectsApi(cluster.api_client)
    for attempt in range(5):
        body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        body["spec"] = spec
        try:
            api.replace_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
            return
        except client.ApiException as error:
            if error.status != 409 or attempt == 4:
                raise
