"""Spillover tiers: utilisation, which tier serves, and the picker's filter (table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.spillover import Spillover, SpilloverTier
from gpufleet.routing import picker, spillover
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest, Signals

MODEL = "llama-3.1-8b"
# H200 until 50 % (of 10 request slots each), then H100 until 80 %, then the A100s.
TIERS = Spillover(
    tiers=(
        SpilloverTier(generations=("H200",), saturation_percent=50),
        SpilloverTier(generations=("H100-80GB",), saturation_percent=80),
        SpilloverTier(generations=("A100-80GB", "A100-40GB"), saturation_percent=100),
    )
)


def _candidate(
    name: str,
    in_flight: int = 0,
    *,
    kv: float | None = None,
    kv_tokens: float = 0.0,
    capacity: int = 0,
    slots: int = 10,
) -> Candidate:
    gpu = name.split("#")[0]
    endpoint = Endpoint(
        f"http://{name}", MODEL, gpu, 1, 1.0, kv_capacity_tokens=capacity, max_in_flight=slots
    )
    signals = None if kv is None else Signals(kv_usage=kv)
    return Candidate(endpoint, Load(in_flight=in_flight, kv_tokens=kv_tokens, signals=signals))


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (_candidate("H200", 3), 0.3),  # slots
        (_candidate("H200", 3, kv=0.9), 0.9),  # vLLM's KV figure when fuller
        (_candidate("H200", 8, kv=0.1), 0.8),
        (_candidate("H200", 1, kv_tokens=600, capacity=1000), 0.6),  # router's KV estimate
        (_candidate("H200", 1, kv_tokens=600), 0.1),  # capacity unknown: slots only
        (_candidate("H200", 1, kv=0.2, kv_tokens=900, capacity=1000), 0.2),  # metric wins
    ],
)
def test_utilisation_is_the_fuller_resource(candidate: Candidate, expected: float) -> None:
    assert spillover.utilisation(candidate) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("loads", "tier", "chosen"),
    [
        # Idle: the first tier.
        ({"H200#1": 0, "H200#2": 0, "H100-80GB": 0, "A100-80GB": 0}, 0, {"H200#1", "H200#2"}),
        # The H200 mean is 45 % < 50 %: still the H200s, both (the scorers spread within).
        ({"H200#1": 9, "H200#2": 0, "H100-80GB": 0, "A100-80GB": 0}, 0, {"H200#1", "H200#2"}),
        # At 50 %: spill to the H100.
        ({"H200#1": 5, "H200#2": 5, "H100-80GB": 0, "A100-80GB": 0}, 1, {"H100-80GB"}),
        # H100 at 80 % too: the A100 tier, both of its generations.
        ({"H200#1": 5, "H200#2": 5, "H100-80GB": 8, "A100-80GB": 0, "A100-40GB": 9}, 2,
         {"A100-80GB", "A100-40GB"}),
        # An endpoint at its request limit is left out of an unsaturated tier.
        ({"H200": 5, "H100-80GB#1": 10, "H100-80GB#2": 2}, 1, {"H100-80GB#2"}),
        # A tier without endpoints is skipped.
        ({"H100-80GB": 0, "A100-80GB": 0}, 1, {"H100-80GB"}),
        # Generations in no tier come last, saturated only at 100 %.
        ({"H200#1": 5, "H100-80GB": 9, "A100-80GB": 10, "L4": 9}, 3, {"L4"}),
    ],
)  # fmt: skip
def test_select_takes_the_first_unsaturated_tier(
    loads: dict[str, int], tier: int, chosen: set[str]
) -> None:
    candidates = [_candidate(n, k) for n, k in loads.items()]
    free = [c for c in candidates if c.load.in_flight < c.endpoint.max_in_flight]
    selection = spillover.select(TIERS, candidates, free)
    assert selection is not None
    assert selection.tier == tier
    assert {c.id.removeprefix("http://") for c in selection.candidates} == chosen


def test_every_tier_saturated_selects_none() -> None:
    candidates = [_candidate("H200", 5), _candidate("H100-80GB", 8), _candidate("A100-80GB", 10)]
    assert spillover.select(TIERS, candidates, candidates[:2]) is None


def test_without_tiers_every_free_candidate_is_tier_zero() -> None:
    candidates = [_candidate("H200", 9), _candidate("L4", 1)]
    selection = spillover.select(Spillover(), candidates, candidates)
    assert selection == spillover.Selection(0, candidates)


def test_loads_report_each_tier() -> None:
    candidates = [_candidate("H200", 4), _candidate("H200#2", 6), _candidate("L4", 2)]
    rows = [
        (t.generations, t.endpoints, round(t.utilisation, 3), t.saturated)
        for t in spillover.loads(TIERS, candidates)
    ]
    assert rows == [
        (("H200",), 2, 0.5, True),
        (("H100-80GB",), 0, 0.0, True),
        (("A100-80GB", "A100-40GB"), 0, 0.0, True),
        (("L4",), 1, 0.2, False),
    ]


def _policy(strategy: str = "least-request") -> RoutingPolicySpec:
    return RoutingPolicySpec(pools=("p",), strategy=strategy, spillover=TIERS)


@pytest.mark.parametrize("strategy", ["round-robin", "least-request", "cost"])
def test_the_picker_routes_within_the_serving_tier(strategy: str) -> None:
    # The H200 is at 60 % (spilled), the H100 idle but dearer for least-request's
    # tie-break order: every strategy must still take the H100 tier.
    candidates = [_candidate("H200", 6), _candidate("H100-80GB", 0), _candidate("A100-80GB", 0)]
    request = RoutingRequest(MODEL, 100, 50)
    for turn in range(3):
        decision = picker.pick(request, candidates, picker.Inputs(_policy(strategy), turn=turn))
        assert isinstance(decision, picker.Decision)
        assert (decision.endpoint.gpu, decision.tier) == ("H100-80GB", 1)


def test_the_picker_says_spilled_with_each_tier_and_can_ignore_tiers() -> None:
    candidates = [_candidate("H200", 5), _candidate("H100-80GB", 8), _candidate("A100-80GB", 10)]
    request = RoutingRequest(MODEL, 100, 50)
    outcome = picker.pick(request, candidates, picker.Inputs(_policy()))
    assert isinstance(outcome, picker.NoCapacity) and outcome.kind == "spilled"
    assert "H200 50 % of 50 %" in outcome.reason
    assert "A100-80GB+A100-40GB 100 % of 100 %" in outcome.reason
    anywhere = picker.pick(request, candidates, picker.Inputs(_policy(), tiers=False))
    assert isinstance(anywhere, picker.Decision)
    assert (anywhere.endpoint.gpu, anywhere.tier) == ("H200", None)


def test_a_full_fleet_is_saturated_not_spilled() -> None:
    candidates = [_candidate("H200", 10), _candidate("H100-80GB", 10)]
    outcome = picker.pick(RoutingRequest(MODEL, 1, 1), candidates, picker.Inputs(_policy()))
    assert isinstance(outcome, picker.NoCapacity) and outcome.kind == "saturated"
