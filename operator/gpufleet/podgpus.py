"""Which GPUs are the pod's: the UUID file the model server writes and the agent reads.

The agent sidecar requests no GPU (that would take one from vLLM), so NVML shows it
every GPU of the node, other pods' included. Only the model-server container knows its
own: the device plugin mounted exactly those into it. So ``gpufleet worker`` (and, in
the twin, the simulator) writes their UUIDs to the file its ``ENV`` variable names
(set by ``controller.modelpool.podspec``), in a volume both containers mount, and the agent judges
and exports only the GPUs listed there (``gpuagent.scope``); until the file exists it
judges nothing. A contract between containers, like ``labels`` between programs, so it
sits below all four writers and readers.

The file is text, one NVML UUID (``GPU-…``) per line; blank lines and
lines starting with ``#`` are ignored. It is written whole (to a temporary name, then
renamed), so a reader never sees half of it. ``parse``/``render`` are pure;
``read``/``write`` are the two file operations.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# The variable that names the file to the model server (``gpufleet worker``); the
# operator sets it (``controller.modelpool.podspec``) and passes the same path to the agent.
ENV = "GPUFLEET_GPU_UUIDS_FILE"


def parse(text: str) -> frozenset[str]:
    """The UUIDs listed in ``text``."""
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def render(uuids: Iterable[str], *, writer: str) -> str:
    """The file's text for ``uuids``, headed by who wrote it."""
    return "".join([f"# GPUs of this pod, written by {writer}\n", *(f"{u}\n" for u in uuids)])


def read(path: Path) -> frozenset[str] | None:
    """The UUIDs in ``path``; None while it does not exist or lists none (not written yet).

    Raises ``OSError`` for any other failure to read it."""
    try:
        found = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return found or None


def write(path: Path, uuids: Iterable[str], *, writer: str) -> None:
    """Replace ``path`` with ``uuids`` atomically (readable by the agent's user too)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(uuids, writer=writer), encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
