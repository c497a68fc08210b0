"""Kubeconfig files for the local control plane (pure rendering, one writer)."""

from __future__ import annotations

from pathlib import Path

import yaml


def render(*, cluster: str, server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig whose only context talks to ``server`` as the certificate's user."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path
