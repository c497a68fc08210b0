"""The dev cluster's GPUs: a ``GpuSource`` over the simulator's ``GET /sim/gpus``.

In the twin no GPU exists; the simulator standing in for the pod's vLLM keeps the state
of its simulated GPUs (temperature following utilisation, and the overheat, ECC and XID
faults set at its ``/admin/faults``) and serves it as JSON on its GPU port. The pod
runner starts ``gpufleet gpu-agent`` with ``--source twin --twin-url URL`` for that
port, so the agent judges and exports the simulated GPUs exactly as it would real ones.
XID events carry a sequence number; each ``read`` returns those not seen before.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from gpufleet.gpuagent.readings import GpuReading, Snapshot, SourceError, XidEvent

PATH = "/sim/gpus"


def reading(raw: Mapping[str, Any]) -> GpuReading:
    """One GPU of the simulator's JSON (the field names of ``GpuReading``)."""
    return GpuReading(
        index=int(raw["index"]),
        uuid=str(raw["uuid"]),
        name=str(raw["name"]),
        temperature_c=float(raw["temperature_c"]),
        memory_used_mib=int(raw["memory_used_mib"]),
        memory_total_mib=int(raw["memory_total_mib"]),
        utilization_percent=float(raw["utilization_percent"]),
        power_w=None if raw.get("power_w") is None else float(raw["power_w"]),
        ecc_corrected=None if raw.get("ecc_corrected") is None else int(raw["ecc_corrected"]),
        ecc_uncorrected=(
            None if raw.get("ecc_uncorrected") is None else int(raw["ecc_uncorrected"])
        ),
        throttle_reasons=int(raw.get("throttle_reasons") or 0),
    )


class TwinSource:
    """``GpuSource`` reading a simulator at ``url`` (``http://POD_IP:PORT``)."""

    def __init__(
        self, url: str, *, timeout: float = 2.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._url = url.rstrip("/") + PATH
        self._timeout = timeout
        self._clock = clock
        self._seen_seq = 0

    def _fetch(self) -> Mapping[str, Any]:
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as response:
                doc = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise SourceError(f"GET {self._url}: {exc}") from exc
        if not isinstance(doc, dict):
            raise SourceError(f"GET {self._url}: expected a JSON object")
        return doc

    def read(self) -> Snapshot:
        doc = self._fetch()
        try:
            gpus = tuple(reading(g) for g in doc.get("gpus") or [])
            uuids = {g.index: g.uuid for g in gpus}
            top = max((int(x["seq"]) for x in doc.get("xids") or []), default=0)
            if top < self._seen_seq:  # the simulator restarted: its sequence did too
                self._seen_seq = 0
            fresh = [x for x in doc.get("xids") or [] if int(x["seq"]) > self._seen_seq]
            events = tuple(
                XidEvent(gpu_uuid=uuids.get(int(x["gpu"]), str(x["gpu"])), xid=int(x["xid"]),
                         at=self._clock())
                for x in fresh
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"GET {self._url}: unexpected GPU state: {exc!r}") from exc
        self._seen_seq = max([self._seen_seq, *(int(x["seq"]) for x in fresh)])
        return Snapshot(gpus=gpus, xids=events)

    def close(self) -> None:
        return None
