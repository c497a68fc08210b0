"""The pod runner as a cluster component: its command line, argv and health URL.

``dev-cluster up`` starts ``python -m gpufleet.devcluster.twinmain --name N --port P …``
after the KWOK nodes are Ready (unless ``--no-workloads``), records it like the other
components and waits for ``/healthz``; ``down`` stops it (it stops its pods' processes)
and then any pod process a runner recorded, so nothing is left behind. The process
itself is ``twinmain``, which reads the recorded cluster; this module describes it to
the cluster and so imports nothing of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpufleet.devcluster import components

PODS_DIR = "pods"


def argv(
    name: str, *, port: int, speed: float = 1.0, load_seconds: float | None = None
) -> list[str]:
    """The runner's command line for cluster ``name``."""
    out = [sys.executable, "-m", "gpufleet.devcluster.twinmain", f"--name={name}",
           f"--port={port}", f"--speed={speed:g}"]  # fmt: skip
    if load_seconds is not None:
        out.append(f"--load-seconds={load_seconds:g}")
    return out


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/healthz"


def pods_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/pods"


def pods_root(layout: components.Layout) -> Path:
    return layout.root / PODS_DIR
