"""A twin pod's private folder: its volumes, its ServiceAccount kubeconfig, its log.

Each pod the runner starts gets ``<cluster>/pods/<namespace>_<name>_<uid8>/`` with one
folder per volume (ConfigMap, Secret and projected volumes filled with their keys, the
others empty) and, for gpufleet's own containers when the pod mounts a ServiceAccount
token, ``kubeconfig``: the API server, the cluster CA and a token from a TokenRequest
bound to the pod, so the process runs with exactly its ServiceAccount's RBAC. Files are
replaced atomically (write, then rename) so a process never reads half a file when
the runner refreshes a volume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gpufleet.devcluster import workloads

TOKEN_SECONDS = 86_400
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclasses.dataclass(frozen=True, slots=True)
class PodDir:
    """Where one pod's files live."""

    root: Path

    @classmethod
    def of(cls, pods_root: Path, namespace: str, name: str, uid: str) -> PodDir:
        return cls(pods_root / f"{namespace}_{name}_{uid[:8]}")

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def record(self) -> Path:
        return self.root / "record.json"


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _write_files(folder: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        target = (folder / rel).resolve()
        if folder.resolve() not in target.parents:
            continue  # a key such as "../x" must not escape the volume
        current = target.read_text() if target.is_file() else None
        if current != content:
            write_atomic(target, content, mode=0o644)


def materialise(
    pod: workloads.RawPod,
    where: PodDir,
    *,
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    token: str | None,
) -> None:
    """Create or refresh every volume folder of ``pod`` under ``where``."""
    spec = pod.get("spec") or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    for volume in spec.get("volumes") or []:
        folder = where.volume(str(volume["name"]))
        folder.mkdir(parents=True, exist_ok=True)
        files = workloads.volume_files(volume, configmaps=configmaps, secrets=secrets) or {}
        if _has_token_source(volume) and token is not None:
            files |= {"token": token, "namespace": namespace}
        _write_files(folder, files)
    where.home.mkdir(parents=True, exist_ok=True)


def _has_token_source(volume: Mapping[str, Any]) -> bool:
    sources = (volume.get("projected") or {}).get("sources") or []
    return any(s.get("service_account_token") for s in sources)


def mount_map(container: Mapping[str, Any], where: PodDir) -> workloads.MountMap:
    points = workloads.mount_points(container)
    return workloads.MountMap(tuple((path, str(where.volume(name))) for name, path, _ in points))


def write_kubeconfig(where: PodDir, *, server: str, ca: Path, token: str, namespace: str) -> Path:
    """A kubeconfig equivalent to in-cluster config: the API server, CA, pod-bound token."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": namespace}}],
        "current-context": "in-cluster",
    }  # fmt: skip
    write_atomic(where.kubeconfig, yaml.safe_dump(doc, sort_keys=False))
    return where.kubeconfig


def remove(where: PodDir) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(where.root)


def base_env(where: PodDir) -> dict[str, str]:
    """What every pod process starts with: no variable of the runner's own leaks in
    (its admin KUBECONFIG least of all)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(where.home),
        "PYTHONUNBUFFERED": "1",
    }
