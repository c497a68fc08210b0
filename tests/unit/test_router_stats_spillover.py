"""/stats shows the spillover tiers as the picker judges them."""

from __future__ import annotations

from typing import Any

from gpufleet.api.runtime import CircuitBreaker
from gpufleet.api.spillover import Spillover, SpilloverTier
from gpufleet.router import liveconfig
from gpufleet.router.registry import Registry
from gpufleet.router.stats import Stats, document
from gpufleet.routing.model import Endpoint


def _rows(registry: Registry, tiers: Spillover) -> Any:
    found = document(
        Stats(), registry, strategy="cost", signal_age_s=None, signal_error="",
        queue_waiting=0, config_state=liveconfig.ConfigState(), tiers=tiers,
    )  # fmt: skip
    return found["spillover"]["models"]["m"]  # type: ignore[index]


def test_an_endpoint_about_to_be_interrupted_does_not_count_in_its_tier() -> None:
    # The H100 tier: one idle replica whose node is being reclaimed, one at its limit.
    # The picker leaves the leaving one out, so the tier is full and spills to the A100s;
    # /stats must say so (it averaged the idle one in: 50 %, serving).
    registry = Registry(CircuitBreaker(), clock=lambda: 0.0)
    registry.replace([
        Endpoint("http://h1", "m", "H100-80GB", 1, 1.0, max_in_flight=1,
                 interruption="spot reclaim"),
        Endpoint("http://h2", "m", "H100-80GB", 1, 1.0, max_in_flight=1),
        Endpoint("http://a1", "m", "A100-80GB", 1, 1.0, max_in_flight=1),
    ])  # fmt: skip
    registry.lease("http://h2", 1.0)
    tiers = Spillover(tiers=(SpilloverTier(generations=("H100-80GB",), saturation_percent=80),))
    rows = _rows(registry, tiers)
    assert rows["serving"] == 1
    assert rows["tiers"][0]["endpoints"] == 1 and rows["tiers"][0]["saturated"]
