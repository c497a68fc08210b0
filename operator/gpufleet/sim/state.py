"""One simulator process's settings and its API app's mutable state.

``SimSettings`` is what the process is started with (``gpufleet sim``'s flags);
``SimState`` what its apps share while it runs: the engine's runner, the metrics, the
injected faults and the request counter, under the app key ``STATE``. The API app
(``server``) and the endpoints it delegates to (``embeddings``) read it from here.
"""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Callable

from aiohttp import web

from gpufleet.sim import metrics
from gpufleet.sim.faults import FaultConfig
from gpufleet.sim.replica import Replica
from gpufleet.sim.runner import Runner


@dataclasses.dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything one simulator process is started with.

    ``load_seconds``: simulated seconds before the API listens (the model load); the
    process waits ``load_seconds / speed`` of wall time.
    """

    replica: Replica
    served_model_name: str
    speed: float = 1.0
    load_seconds: float = 0.0
    seed: int = 0
    eos_median_tokens: int = 0
    legacy_metric_names: bool = False
    faults: FaultConfig = dataclasses.field(default_factory=FaultConfig)
    hostname: str = dataclasses.field(default_factory=socket.gethostname)
    # What the GPUs' UUIDs derive from (``metrics.gpu_uuid``); empty = the hostname.
    gpu_uuid_seed: str = ""

    def gpu_uuids(self) -> list[str]:
        """The UUIDs of the replica's GPUs, by index."""
        seed = self.gpu_uuid_seed or self.hostname
        return [metrics.gpu_uuid(seed, i) for i in range(self.replica.tensor_parallel_size)]


@dataclasses.dataclass(slots=True)
class SimState:
    """Mutable per-app state: the runner, fault config, request counter."""

    settings: SimSettings
    runner: Runner
    vllm: metrics.VllmMetrics
    faults: FaultConfig
    created: int
    served: int = 0
    xids: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    fault_listeners: list[Callable[[FaultConfig], None]] = dataclasses.field(default_factory=list)

    def rng(self) -> random.Random:
        """A random source for the next request, fixed by the seed and its ordinal."""
        self.served += 1
        return random.Random(f"{self.settings.seed}:{self.served}")

    def set_faults(self, config: FaultConfig) -> None:
        self.faults = config
        for listener in self.fault_listeners:
            listener(config)

    def record_xid(self, xid: int) -> None:
        """One XID event (sequence, GPU, XID) on the faulted GPU; the last 64 are kept."""
        seq = self.xids[-1][0] + 1 if self.xids else 1
        self.xids = [*self.xids[-63:], (seq, self.faults.gpu_fault_index, xid)]

    def gpu_fault(self) -> metrics.GpuFault:
        f = self.faults
        return metrics.GpuFault(
            index=f.gpu_fault_index,
            temperature_c=f.gpu_temperature_c,
            ecc_corrected=f.gpu_ecc_corrected,
            ecc_uncorrected=f.gpu_ecc_uncorrected,
            last_xid=f.gpu_xid or 0,
        )


STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
