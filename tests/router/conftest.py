"""Simulator processes shared by a module's router tests; faults cleared after each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.router.peers import Sim, start_sim


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Sim, Sim]]:
    """An H100-80GB and an A100-40GB replica."""
    fast = start_sim("H100-80GB")
    try:
        slow = start_sim("A100-40GB")
    except BaseException:
        fast.stop()
        raise
    try:
        yield fast, slow
    finally:
        fast.stop()
        slow.stop()


@pytest.fixture
def sims(pair: tuple[Sim, Sim]) -> Iterator[tuple[Sim, Sim]]:
    for sim in pair:
        sim.faults()
    yield pair
    for sim in pair:
        if sim.proc.poll() is None:
            sim.faults()
