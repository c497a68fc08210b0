"""``die_rate``: the die-after fault cuts that share of streams, drawn per request from
the seeded source; at the default (1) it cuts every stream, as before."""

from __future__ import annotations

import random

import pytest

from gpufleet.sim.faults import FaultConfig, decide


@pytest.mark.parametrize(("rate", "low", "high"), [(1.0, 2000, 2000), (0.05, 60, 140), (0.0, 0, 0)])
def test_die_rate_is_the_share_of_streams_cut(rate: float, low: int, high: int) -> None:
    config = FaultConfig(die_after_chunks=3, die_rate=rate)
    rng = random.Random(7)
    cut = sum(decide(config, rng).die_after_chunks == 3 for _ in range(2000))
    assert low <= cut <= high


def test_without_die_after_chunks_nothing_is_cut() -> None:
    assert decide(FaultConfig(die_rate=0.5), random.Random(1)).die_after_chunks is None
