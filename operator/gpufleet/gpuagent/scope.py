"""The pod's GPUs among those NVML shows the agent (pure).

NVML shows the agent sidecar every GPU of the node; the model server lists the pod's
own in a file (``gpufleet.podgpus``), and ``scoped`` keeps only those of a read.
"""

from __future__ import annotations

import dataclasses

from gpufleet.gpuagent.readings import GpuReading, Snapshot


@dataclasses.dataclass(frozen=True, slots=True)
class Scoped:
    """The pod's GPUs among a read, and those the source did not show. (XID events are
    narrowed by the agent, which keeps every one read: the list may come later.)"""

    gpus: tuple[GpuReading, ...]
    missing: tuple[str, ...] = ()


def scoped(snapshot: Snapshot, uuids: frozenset[str]) -> Scoped:
    """Only the GPUs of ``uuids``; those not read are ``missing``."""
    gpus = tuple(g for g in snapshot.gpus if g.uuid in uuids)
    seen = {g.uuid for g in gpus}
    return Scoped(gpus, tuple(sorted(uuids - seen)))
