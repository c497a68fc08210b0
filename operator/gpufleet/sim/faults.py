"""Injected failures, so routers can be tested against a misbehaving worker.

``FaultConfig`` is validated at both of its entries (CLI flags and the admin endpoint
``POST /admin/faults``, which merges the given fields; ``DELETE`` clears all). The
per-request choice is ``decide``, pure over a seeded random source:

- ``error_rate``: share of requests answered 500 before any work;
- ``oom_rate``: share answered 500 with a CUDA out-of-memory message, as vLLM does when
  an allocation fails inside the engine;
- ``hang_s``: seconds to wait before sending headers (a stuck worker);
- ``die_after_chunks``: abort the connection after this many streamed chunks, in the
  share ``die_rate`` of streams (all by default);
- ``slowdown``: multiply every step's duration (thermal throttling, a noisy neighbour);
- ``refuse_connections``: close the API listener, so connects are refused;
- ``unhealthy``: ``GET /health`` answers 503.

GPU faults, read by the DCGM metrics and ``GET /sim/gpus`` (what the twin's GPU health
agent reads), all on the GPU ``gpu_fault_index`` of the replica:

- ``gpu_temperature_c``: the GPU reads this temperature (overheat), and reports thermal
  throttling from 85 °C; None follows utilisation;
- ``gpu_ecc_uncorrected`` / ``gpu_ecc_corrected``: its volatile double-/single-bit ECC
  error counts;
- ``gpu_xid``: an XID error; every ``POST`` that names it (and the ``--gpu-xid`` flag)
  records one XID event, as NVML reports one per error.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

import pydantic

OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "79.10 GiB of which 1.12 GiB is free."
)


class FaultConfig(pydantic.BaseModel):
    """The faults in force; all off by default."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    error_rate: float = pydantic.Field(0.0, ge=0, le=1, description="share answered 500")
    oom_rate: float = pydantic.Field(0.0, ge=0, le=1, description="share answered CUDA OOM")
    hang_s: float = pydantic.Field(0.0, ge=0, le=3600, description="delay before headers")
    die_after_chunks: int | None = pydantic.Field(
        None, ge=0, description="abort streams after this many chunks"
    )
    die_rate: float = pydantic.Field(
        1.0, ge=0, le=1, description="share of streams die_after_chunks cuts"
    )
    slowdown: float = pydantic.Field(1.0, ge=1, le=1000, description="step time multiplier")
    refuse_connections: bool = pydantic.Field(False, description="close the API listener")
    unhealthy: bool = pydantic.Field(False, description="/health answers 503")
    gpu_fault_index: int = pydantic.Field(0, ge=0, le=71, description="GPU the GPU faults hit")
    gpu_temperature_c: float | None = pydantic.Field(
        None, ge=0, le=150, description="temperature the GPU reads (overheat)"
    )
    gpu_ecc_uncorrected: int = pydantic.Field(0, ge=0, description="volatile double-bit ECC")
    gpu_ecc_corrected: int = pydantic.Field(0, ge=0, description="volatile single-bit ECC")
    gpu_xid: int | None = pydantic.Field(
        None, ge=1, le=1000, description="the last XID error reported"
    )

    def merged(self, changes: dict[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied and validated (``ValidationError`` if bad)."""
        return FaultConfig.model_validate({**self.model_dump(), **changes})


Outcome = Literal["serve", "error", "oom"]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request."""

    outcome: Outcome
    hang_s: float
    die_after_chunks: int | None


def decide(config: FaultConfig, rng: random.Random) -> Decision:
    """Draw the fate of one request under ``config``."""
    draw = rng.random()
    outcome: Outcome = "serve"
    if draw < config.error_rate:
        outcome = "error"
    elif draw < config.error_rate + config.oom_rate:
        outcome = "oom"
    die = config.die_after_chunks
    # Drawn only when some streams are spared, so a seeded run without it is unchanged.
    if die is not None and config.die_rate < 1 and rng.random() >= config.die_rate:
        die = None
    return Decision(outcome, config.hang_s, die)
