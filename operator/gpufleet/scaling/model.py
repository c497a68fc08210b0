"""What one autoscaling decision reads and returns. Pure, frozen values.

Times are seconds on one clock chosen by the caller (the operator passes wall-clock
time; tests pass literals). Signals of a variant are summed over its ready replicas,
except KV-cache usage, which is their mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from gpufleet.scaling import inventory

Preference = Literal["cost", "latency", "balanced"]


@dataclasses.dataclass(frozen=True, slots=True)
class Signals:
    """A variant's load, read from Prometheus over its ready replicas."""

    kv_usage: float  # mean, 0-1
    waiting: float  # requests queued in the engines, summed
    running: float  # requests being generated, summed
    tokens_per_second: float  # generated tokens per second, summed
    ttft_p90_s: float | None = None  # worst replica's p90 time to first token; None: no data


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """One variant as it stands. ``replicas`` is the Deployment's ``spec.replicas``;
    ``loading_since`` the start times of its pods that exist but are not Ready yet.
    ``prior_speed`` is the catalog's guess of one replica's generation speed relative to
    the others' (the generation's throughput weight x TP), used until it is measured.
    ``signals`` is None when Prometheus had nothing fresh for it."""

    name: str
    gpu: str
    tensor_parallel_size: int
    min_replicas: int
    max_replicas: int
    replicas: int
    ready: int
    prior_speed: float
    loading_since: tuple[float, ...] = ()
    signals: Signals | None = None
    cost_per_gpu_hour: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Demand:
    """The routers' view of a pool: requests queued for capacity, and requests held
    because no replica of the pool is ready (scale from zero)."""

    queued: int = 0
    held: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.held


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """A pool's targets and behaviour (``spec.autoscaling``, read by
    ``controller.autoscaling.scalinginputs.policy``)."""

    target_kv_usage: float = 0.8
    target_waiting: int = 4
    target_ttft_s: float | None = None
    preference: Preference = "cost"
    cold_start_s: float = 300.0
    up_window_s: float = 60.0
    up_pods: int = 2
    up_period_s: float = 120.0
    down_window_s: float = 300.0
    down_pods: int = 1
    down_period_s: float = 300.0
    scale_to_zero_after_s: float = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """Everything one decision reads besides the history. ``inventory`` None: the nodes
    are unknown, so neither node shape nor free GPUs limit the decision."""

    variants: tuple[Variant, ...]
    policy: Policy = Policy()
    demand: Demand = Demand()
    inventory: inventory.Inventory | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Recommendation:
    """Replicas per variant the load called for at ``at``, before the behaviour."""

    at: float
    replicas: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A change of a variant's replicas decided at ``at`` (negative: down)."""

    at: float
    variant: str
    delta: int


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """What earlier decisions leave for the next: recommendations (stabilisation
    windows), scale events (rate limits, cold starts) and the last time the pool had
    work (scale to zero). Start with ``History()``; keep ``Decision.history``."""

    recommendations: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    active_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class VariantDecision:
    """Replicas a variant should run, and why. ``feasible`` is False when its
    replicas can never be scheduled on the nodes there are (then ``desired`` is 0)."""

    name: str
    desired: int
    reason: str
    feasible: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """One decision for a pool: per variant, the pool-level ``summary``, the history
    to pass to the next decision."""

    variants: tuple[VariantDecision, ...]
    summary: str
    history: History

    def desired(self) -> dict[str, int]:
        return {v.name: v.desired for v in self.variants}
