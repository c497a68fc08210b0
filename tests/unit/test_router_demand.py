"""The router's demand signal, pure: which requests wait (held for a pool with no ready
endpoint, queued behind saturated ones) and how the queue adds them up per pool."""

from __future__ import annotations

import pytest

from gpufleet.router import config
from gpufleet.routing import picker, routeplan, waitqueue
from gpufleet.routing.model import Endpoint

SATURATED = picker.NoCapacity("saturated", "every endpoint is at its request limit")
UNAVAILABLE = picker.NoCapacity("unavailable", "no healthy endpoint serves model m")
TOO_LARGE = picker.NoCapacity("too_large", "too many tokens")
CHOSEN = picker.Decision(Endpoint("http://e", "m", "L4", 1, 1.0, pool="a"))
Held = waitqueue.Waiting


@pytest.mark.parametrize(
    ("outcome", "discovered", "pool_models", "expected"),
    [
        (CHOSEN, {"m": "a"}, {"a": "m"}, None),
        (SATURATED, {"m": "a"}, {}, Held("a")),
        (SATURATED, {"m": "a"}, {"z": "m"}, Held("a")),  # its endpoints' pool first
        # No endpoint of the model: held for the pool that serves it (first by name).
        (UNAVAILABLE, {}, {"b": "m", "a": "m", "c": "other"}, Held("a", held=True)),
        (UNAVAILABLE, {"other": "c"}, {"a": "m"}, Held("a", held=True)),
        # Endpoints exist but none is healthy, or no pool is declared for it: 503 at once.
        (UNAVAILABLE, {"m": "a"}, {"a": "m"}, None),
        (UNAVAILABLE, {}, {"a": "other"}, None),
        (TOO_LARGE, {}, {"a": "m"}, None),
    ],
)
def test_wait_reason(
    outcome: picker.Decision | picker.NoCapacity,
    discovered: dict[str, str],
    pool_models: dict[str, str],
    expected: waitqueue.Waiting | None,
) -> None:
    got = routeplan.wait_reason(outcome, "m", discovered=discovered, pool_models=pool_models)
    assert got == expected


def test_demand_counts_live_tickets_per_pool() -> None:
    queue = waitqueue.WaitQueue(3)
    held, _ = queue.push(0, 0.0, waitqueue.Waiting("a", held=True))
    queued, _ = queue.push(0, 0.0, waitqueue.Waiting("a"))
    queue.push(0, 0.0, waitqueue.Waiting("b", held=True))
    assert queue.demand() == {"a": waitqueue.Demand(1, 1), "b": waitqueue.Demand(0, 1)}
    queue.wait_for(held, waitqueue.Waiting("a"))  # its pool got endpoints, all busy
    queue.remove(queued)
    assert queue.demand() == {"a": waitqueue.Demand(1, 0), "b": waitqueue.Demand(0, 1)}
    _, shed = queue.push(5, 0.0, waitqueue.Waiting("c", held=True))
    _, rejected = queue.push(0, 0.0, waitqueue.Waiting("d", held=True))  # full: the newcomer
    assert shed is None and rejected is not None
    assert queue.demand() == {
        "a": waitqueue.Demand(1, 0),
        "b": waitqueue.Demand(0, 1),
        "c": waitqueue.Demand(0, 1),
    }
    queue.push(9, 0.0, waitqueue.Waiting("c", held=True))  # sheds the newest of lowest
    assert queue.demand()["c"] == waitqueue.Demand(0, 2)
    assert sum(d.queued + d.held for d in queue.demand().values()) == len(queue) == 3


def test_pool_models_must_name_routed_pools() -> None:
    kubernetes = {"namespace": "n", "pools": ["a"], "poolModels": {"a": "m", "b": "m"}}
    raw = {"policy": {}, "kubernetes": kubernetes}
    with pytest.raises(config.ConfigError, match=r"poolModels names pools not in pools: \['b'\]"):
        config.parse(raw)
