"""The operator's Kubernetes I/O: server-side apply, delete, status and pod-annotation
patches, Secret checks, Events, version LISTs for the watch check.

Synchronous calls on a ``kubernetes`` ``ApiClient`` (the reconciler runs them in a
thread), raw JSON in and out — no model (de)serialisation, the bodies are the
``TypedDict``s of ``controller.bodies``. Every write names one field manager. Errors are
translated here into the operator's two failure kinds::

    KubeError
     ├── Transient   retry later: 409 conflict, 429 (honouring Retry-After), 5xx,
     │               403 (RBAC may be fixed), connection failures; ``delay`` in seconds
     └── Rejected    retrying cannot help: the API server refused the intent (400, 422)

404 on delete and 409 AlreadyExists never surface: a child that is already gone, or
already there, is what was wanted.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pydantic
import urllib3
from kubernetes import client

from gpufleet import kube, labels
from gpufleet.api import common
from gpufleet.controller import bodies, cache, conditions, owned

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
_PATHS: Mapping[str, str] = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps/{name}",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{name}",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
}
_CUSTOM = f"/apis/{common.GROUP}/{common.VERSION}"
TIMEOUT = (5, 30)
# gpufleet's autoscaler owns a scaled Deployment's spec.replicas under this name, apart
# from the operator's own apply (labels.FIELD_MANAGER), which then leaves the field alone.
AUTOSCALER_FIELD_MANAGER = "gpufleet-autoscaler"
# LISTs served from the API server's watch cache (no quorum read of etcd).
_CACHED = {"resourceVersion": "0"}
_NOT_FINISHED = "status.phase!=Succeeded,status.phase!=Failed"


class KubeError(Exception):
    """An API call failed; see the subclasses for what to do about it."""


class Transient(KubeError):
    """Worth retrying after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Rejected(KubeError):
    """The API server refused the request for good."""


class NotFound(KubeError):
    """404, for callers that treat absence as an answer."""


def new_client(kubeconfig: Path | None) -> client.ApiClient:
    """A client from ``kubeconfig``, else ``$KUBECONFIG``, in-cluster, ~/.kube
    (``gpufleet.kube.new_client``)."""
    return kube.new_client(kubeconfig)


def _translate(method: str, path: str, status_code: int, text: str, retry_after: str) -> KubeError:
    try:
        message = str(json.loads(text).get("message", text))
    except ValueError:
        message = text[:500]
    what = f"{method} {path}: {status_code} {message}"
    if status_code == 404:
        return NotFound(what)
    if status_code == 429:
        delay = float(retry_after) if retry_after.isdigit() else 5.0
        return Transient(what, delay=delay)
    if status_code in (409, 403) or status_code >= 500:
        return Transient(what, delay=30.0 if status_code == 403 else 2.0)
    return Rejected(what)


class Kube:
    """The calls the reconciler makes; one instance per operator."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call; the decoded JSON response, or a ``KubeError``."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(
            method, url, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.api.call_api(*params[:4], _request_timeout=TIMEOUT)
            response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(f"{method} {path}: {exc}", delay=2.0) from exc
        text = response.data.decode() if response.data else "{}"
        if response.status >= 300:
            retry_after = str(response.getheader("Retry-After") or "")  # type: ignore[no-untyped-call]
            raise _translate(method, path, response.status, text, retry_after)
        return cast(dict[str, Any], json.loads(text))

    def apply(self, child: bodies.Child) -> dict[str, Any]:
        """Server-side apply ``child`` as the operator's field manager, taking conflicts."""
        meta = child["metadata"]
        path = _PATHS[child["kind"]].format(ns=meta["namespace"], name=meta["name"])
        query = {"fieldManager": labels.FIELD_MANAGER, "force": "true"}
        return self.request("PATCH", path, query=query, body=child, content_type=APPLY)

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Server-side apply of just a Deployment's ``spec.replicas``, as the autoscaler's
        field manager (taking the field from whoever held it); returns the Deployment."""
        path = _PATHS["Deployment"].format(ns=namespace, name=name)
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        query = {"fieldManager": AUTOSCALER_FIELD_MANAGER, "force": "true"}
        return self.request("PATCH", path, query=query, body=body, content_type=APPLY)

    def nodes(self) -> list[dict[str, Any]]:
        """Every Node (from the API server's cache)."""
        return list(self.request("GET", "/api/v1/nodes", query=_CACHED).get("items", []))

    def running_pods(self) -> list[dict[str, Any]]:
        """Every pod in the cluster that has not finished (from the API server's cache):
        what holds GPUs on the nodes."""
        query = {**_CACHED, "fieldSelector": _NOT_FINISHED}
        return list(self.request("GET", "/api/v1/pods", query=query).get("items", []))

    def live(self, child: bodies.Child) -> dict[str, Any] | None:
        """The object of ``child``'s kind and name as the API server has it; None if none."""
        meta = child["metadata"]
        path = _PATHS[child["kind"]].format(ns=meta["namespace"], name=meta["name"])
        try:
            return self.request("GET", path)
        except NotFound:
            return None

    def delete(self, target: owned.Deletion) -> None:
        """Delete one child (only the object with that UID); already gone is success."""
        path = _PATHS[target.kind].format(ns=target.namespace, name=target.name)
        body = {"preconditions": {"uid": target.uid}, "propagationPolicy": "Background"}
        try:
            self.request("DELETE", path, body=body)
        except NotFound:
            return
        except Transient as exc:
            if "Precondition failed" not in str(exc):
                raise

    def patch_status(self, plural: str, namespace: str, name: str, new: pydantic.BaseModel) -> str:
        """Replace an object's status (merge patch of the whole status object); returns the
        object's new resourceVersion, empty if it is gone."""
        path = f"{_CUSTOM}/namespaces/{namespace}/{plural}/{name}/status"
        doc = {"status": new.model_dump(mode="json", by_alias=True, exclude_none=True)}
        try:
            out = self.request("PATCH", path, body=doc, content_type=MERGE)
        except NotFound:
            return ""  # the object was deleted meanwhile: nothing to report on
        return str(out.get("metadata", {}).get("resourceVersion", ""))

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge ``annotations`` into a pod's metadata; a pod already gone is no failure."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        doc = {"metadata": {"annotations": dict(annotations)}}
        with contextlib.suppress(NotFound):
            self.request("PATCH", path, body=doc, content_type=MERGE)

    def secret_problem(self, namespace: str, ref: common.SecretKeyRef) -> str:
        """Why the Secret ``ref`` cannot supply the hub token; empty when it can."""
        path = f"/api/v1/namespaces/{namespace}/secrets/{ref.name}"
        try:
            secret = self.request("GET", path)
        except NotFound:
            return f'Secret "{ref.name}" not found in namespace "{namespace}"'
        if ref.key not in (secret.get("data") or {}):
            return f'Secret "{ref.name}" has no key "{ref.key}" (hubTokenSecretRef.key)'
        return ""

    def event(self, about: cache.Cached[Any, Any], event: conditions.Event, *, at: str) -> None:
        """Post a core/v1 Event about a custom object (best effort: a lost Event is no
        failure)."""
        ref = {
            "apiVersion": common.API_VERSION,
            "kind": about.kind,
            "name": about.name,
            "namespace": about.namespace,
            "uid": about.uid,
        }
        body = {
            "metadata": {"generateName": f"{about.name}.", "namespace": about.namespace},
            "involvedObject": ref,
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": "gpufleet-operator"},
            "count": 1,
            "firstTimestamp": at,
            "lastTimestamp": at,
        }
        with contextlib.suppress(KubeError):
            self.request("POST", f"/api/v1/namespaces/{about.namespace}/events", body=body)

    def versions(self, plural: str, namespaces: tuple[str, ...]) -> dict[tuple[str, str], str]:
        """(namespace, name) → resourceVersion of every ``plural`` object in scope (one
        LIST per namespace, one cluster-wide when ``namespaces`` is empty)."""
        scoped = [f"{_CUSTOM}/namespaces/{ns}/{plural}" for ns in namespaces]
        paths = scoped or [f"{_CUSTOM}/{plural}"]
        out: dict[tuple[str, str], str] = {}
        for path in paths:
            for item in self.request("GET", path).get("items", []):
                meta = item["metadata"]
                out[(meta["namespace"], meta["name"])] = meta["resourceVersion"]
        return out
