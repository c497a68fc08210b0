"""What the autoscaler tells the pool reconciler, which alone writes a ModelPool's status.

Pure values. The autoscaler (``controller.autoscaling.autoscaler``) keeps one ``ScalingView`` for
the operator: the node inventory it last read (free GPUs per generation and node shape,
which the reconciler plans TP against) and, per pool it scales, a ``PoolReport`` — each
variant's desired replicas, the reason and the last time it changed them. The reconciler
turns both into status fields (``status``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from gpufleet.api.modelpool import GenerationStatus
from gpufleet.controller.workqueue import Key
from gpufleet.scaling import inventory


@dataclasses.dataclass(frozen=True, slots=True)
class VariantReport:
    """The autoscaler's word on one variant; ``last_scale`` in seconds since the epoch
    (None: not changed since the operator started)."""

    desired: int
    reason: str
    feasible: bool = True
    last_scale: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PoolReport:
    """One decision's outcome. ``state`` is the ``ScalingActive`` condition's reason:
    ``Scaling`` (signals read), ``BoundsOnly`` (no Prometheus configured) or
    ``SignalsUnavailable`` (replicas held until Prometheus answers for them)."""

    state: str
    summary: str
    variants: Mapping[str, VariantReport]


@dataclasses.dataclass
class ScalingView:
    """The autoscaler's latest view, read by the pool reconciler."""

    nodes: inventory.Inventory | None = None
    nodes_problem: str = ""
    reports: dict[Key, PoolReport] = dataclasses.field(default_factory=dict)

    def shapes(self) -> dict[str, int]:
        """GPUs per node of each generation with schedulable nodes (empty: unknown)."""
        return {gpu: g.gpus_per_node for gpu, g in (self.nodes or {}).items()}

    def report(self, key: Key) -> PoolReport | None:
        return self.reports.get(key)


def generations(
    nodes: inventory.Inventory | None, gpus: Iterable[str]
) -> tuple[GenerationStatus, ...]:
    """Status entries for the generations ``gpus`` (in order, once each), as seen."""
    if nodes is None:
        return ()
    out: list[GenerationStatus] = []
    for gpu in dict.fromkeys(gpus):
        g = nodes.get(gpu)
        out.append(
            GenerationStatus(
                gpu=gpu,
                nodes=len(g.free_per_node) if g else 0,
                gpus_per_node=g.gpus_per_node if g else 0,
                free_gpus=g.free_gpus if g else 0,
                largest_free_block=max(g.free_per_node, default=0) if g else 0,
            )
        )
    return tuple(out)
