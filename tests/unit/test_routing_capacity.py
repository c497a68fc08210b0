"""Spot capacity and interruption in the picker: a class with preferSpot takes spot
endpoints within the serving tier, and an endpoint whose node is marked for
interruption gets no new request while another can serve (table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.spillover import Spillover, SpilloverTier
from gpufleet.routing import picker
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest

MODEL = "llama-3.1-8b"
STRATEGIES = ("round-robin", "least-request", "cost")


def _candidate(
    name: str, *, spot: bool = False, in_flight: int = 0, interruption: str = ""
) -> Candidate:
    gpu = name.split("#")[0]
    endpoint = Endpoint(
        f"http://{name}", MODEL, gpu, 1, 1.0, max_in_flight=4,
        capacity_type="spot" if spot else "on-demand", interruption=interruption,
    )  # fmt: skip
    return Candidate(endpoint, Load(in_flight=in_flight, pending_tokens=in_flight * 100.0))


def _served(policy: RoutingPolicySpec, candidates: list[Candidate], klass: str) -> set[str]:
    """Every endpoint the picker chooses over a few turns."""
    request = RoutingRequest(MODEL, 100, 50, klass=klass)
    chosen = set()
    for turn in range(6):
        decision = picker.pick(request, candidates, picker.Inputs(policy, turn=turn))
        assert isinstance(decision, picker.Decision)
        chosen.add(decision.endpoint.id.removeprefix("http://"))
    return chosen


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("candidates", "klass", "expected"),
    [
        # batch (preferSpot by default) takes the spot endpoints, busy or not ...
        ([_candidate("H100-80GB"), _candidate("A100-80GB#s", spot=True, in_flight=2)],
         "batch", {"A100-80GB#s"}),
        # ... until they have no room; interactive is not steered.
        ([_candidate("H100-80GB"), _candidate("A100-80GB#s", spot=True, in_flight=4)],
         "batch", {"H100-80GB"}),
        ([_candidate("H100-80GB#1"), _candidate("H100-80GB#2", spot=True)],
         "interactive", {"H100-80GB#1", "H100-80GB#2"}),
        # An endpoint marked for interruption gets nothing new, spot or not ...
        ([_candidate("H100-80GB"), _candidate("A100-80GB#s", spot=True, interruption="spot-itn")],
         "batch", {"H100-80GB"}),
        ([_candidate("H100-80GB#1", interruption="TerminationByKubelet"),
          _candidate("H100-80GB#2")], "interactive", {"H100-80GB#2"}),
        # ... unless every endpoint is: it still answers until its node goes.
        ([_candidate("H100-80GB", interruption="x"), _candidate("A100-80GB", interruption="y")],
         "interactive", {"H100-80GB", "A100-80GB"}),
    ],
)  # fmt: skip
def test_capacity_type_and_interruption(
    strategy: str, candidates: list[Candidate], klass: str, expected: set[str]
) -> None:
    # Equal prices: the cost objective then spreads like the others.
    policy = RoutingPolicySpec(pools=("p",), strategy=strategy)
    assert _served(policy, candidates, klass) <= expected
    if strategy != "cost":
        assert _served(policy, candidates, klass) == expected


def test_spot_is_preferred_within_the_serving_tier_only() -> None:
    tiers = Spillover(tiers=(SpilloverTier(generations=("H100-80GB",), saturation_percent=50),))
    policy = RoutingPolicySpec(pools=("p",), strategy="least-request", spillover=tiers)
    # The H100 tier serves (25 %): batch stays there though the A100 is spot.
    candidates = [_candidate("H100-80GB", in_flight=1), _candidate("A100-80GB", spot=True)]
    assert _served(policy, candidates, "batch") == {"H100-80GB"}
    # The H100 tier saturated: the next tier, its spot endpoint.
    busy = [_candidate("H100-80GB", in_flight=2), *candidates[1:], _candidate("L4")]
    assert _served(policy, busy, "batch") == {"A100-80GB"}
