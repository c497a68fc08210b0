"""The route plan over literal snapshots: send (own model, fallback, spillover tier or
overflow), wait (queued or held for a pool) or refuse (400, 503), and the turns taken
(table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.routing import routeplan, waitqueue
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest

MODEL, SMALL = "llama-3.1-8b", "small"
TIERS = {"tiers": [{"generations": ["H200"], "saturationPercent": 50}]}


def _candidate(name: str, in_flight: int = 0, *, model: str = MODEL, pool: str = "p") -> Candidate:
    gpu = name.split("#")[0]
    endpoint = Endpoint(
        f"http://{name}", model, gpu, 1, 1.0, kv_capacity_tokens=10_000, max_in_flight=10,
        pool=pool,
    )  # fmt: skip
    return Candidate(endpoint, Load(in_flight=in_flight))


def _policy(*, fallback: str | None = None, spillover: object = None) -> RoutingPolicySpec:
    spec: dict[str, object] = {"pools": ["p"], "strategy": "least-request"}
    if fallback:
        spec["failureHandling"] = {"fallbackModel": fallback}
    if spillover:
        spec["spillover"] = spillover
    return RoutingPolicySpec.model_validate(spec)


IDLE, FULL = _candidate("H100-80GB"), _candidate("H100-80GB", 10)
SMALL_IDLE = _candidate("L4", model=SMALL, pool="s")
H200_BUSY, A100_IDLE = _candidate("H200", 6), _candidate("A100-80GB")


def _where(result: routeplan.Plan) -> object:
    """What a plan says, in a few literals: the endpoint and tier, the wait, or the
    refusal."""
    if isinstance(result, routeplan.Send):
        return ("send", result.decision.endpoint.id, result.decision.tier)
    if isinstance(result, routeplan.Wait):
        return ("wait", result.waiting)
    return ("refuse", result.kind)


@pytest.mark.parametrize(
    ("candidates", "policy", "pool_models", "inputs", "expected", "turns"),
    [
        ([IDLE], _policy(), {}, 100, ("send", IDLE.id, None), 1),
        # Saturated: queued for the endpoints' pool.
        ([FULL], _policy(), {}, 100, ("wait", waitqueue.Waiting("p")), 1),
        # No endpoint of the model, a routed pool serves it: held for it (scale from zero).
        ([], _policy(), {"z": MODEL, "y": MODEL}, 100, ("wait", waitqueue.Waiting("y", True)), 1),
        ([], _policy(), {}, 100, ("refuse", "unavailable"), 1),
        ([IDLE], _policy(), {}, 20_000, ("refuse", "too_large"), 1),
        # No capacity for the model: the fallback model's endpoint, one more turn.
        ([FULL, SMALL_IDLE], _policy(fallback=SMALL), {}, 100, ("send", SMALL_IDLE.id, None), 2),
        ([FULL], _policy(fallback=SMALL), {}, 100, ("wait", waitqueue.Waiting("p")), 2),
        # Spillover: the first tier with room; all saturated: over all tiers (tier None).
        ([H200_BUSY, A100_IDLE], _policy(spillover=TIERS), {}, 100,
         ("send", A100_IDLE.id, 1), 1),
        ([_candidate("H200", 6)], _policy(spillover=TIERS), {}, 100,
         ("send", "http://H200", None), 2),
        # ... unless the fallback model has room.
        ([_candidate("H200", 6), SMALL_IDLE], _policy(fallback=SMALL, spillover=TIERS), {},
         100, ("send", SMALL_IDLE.id, 1), 2),  # the L4 is in the unlisted tier
    ],
)  # fmt: skip
def test_plan(
    candidates: list[Candidate],
    policy: RoutingPolicySpec,
    pool_models: dict[str, str],
    inputs: int,
    expected: object,
    turns: int,
) -> None:
    snapshot = routeplan.Snapshot(policy, candidates, turn=7, pool_models=pool_models)
    result = routeplan.plan(RoutingRequest(MODEL, inputs, 10), snapshot)
    assert (_where(result), result.turn) == (expected, 7 + turns)


def test_a_woken_request_asks_for_no_fallback() -> None:
    snapshot = routeplan.Snapshot(_policy(fallback=SMALL), [FULL, SMALL_IDLE])
    result = routeplan.plan(RoutingRequest(MODEL, 100, 10), snapshot, fallback=False)
    assert _where(result) == ("wait", waitqueue.Waiting("p"))


def test_a_retry_excludes_the_endpoints_tried() -> None:
    other = _candidate("H100-80GB#2")
    snapshot = routeplan.Snapshot(_policy(), [IDLE, other], exclude=frozenset({IDLE.id}))
    assert _where(routeplan.plan(RoutingRequest(MODEL, 100, 10), snapshot)) == (
        "send", other.id, None,
    )  # fmt: skip
    tried = routeplan.Snapshot(_policy(), [IDLE], exclude=frozenset({IDLE.id}))
    # Tried them all: refused (its endpoints exist, so not held).
    assert _where(routeplan.plan(RoutingRequest(MODEL, 100, 10), tried)) == (
        "refuse", "unavailable",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], {}),
        ([_candidate("b", pool="q"), _candidate("a", pool="p")], {MODEL: "p"}),  # first by id
        ([IDLE, SMALL_IDLE], {MODEL: "p", SMALL: "s"}),
    ],
)
def test_discovered_pools(candidates: list[Candidate], expected: dict[str, str]) -> None:
    assert routeplan.discovered_pools(candidates) == expected
