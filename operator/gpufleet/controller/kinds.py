"""The kinds the operator serves, as ``runtime.Kind`` descriptions bound to their reconcilers.

ModelPool: children labelled ``gpufleet.io/pool``, reconciled by ``controller.reconciler``
on events and every ``resync_seconds``.
"""

from __future__ import annotations

from typing import Any

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.controller import reconciler, runtime
from gpufleet.controller.config import OperatorConfig
from gpufleet.controller.workqueue import Key

MODEL_POOL = "ModelPool"


async def _reconcile_pool(state: runtime.OperatorState, key: Key) -> None:
    cache = state.kind(MODEL_POOL)
    await reconciler.reconcile(key, cache=cache, client=state.client, clock=state.clock)


def build(config: OperatorConfig) -> tuple[runtime.Kind[Any], ...]:
    """Every kind, in the order their loops start."""
    del config
    pools = runtime.Kind(
        name=MODEL_POOL,
        plural="modelpools",
        owner_label=labels.POOL,
        status_model=ModelPoolStatus,
        reconcile=_reconcile_pool,
    )
    return (pools,)
