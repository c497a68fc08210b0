"""Input/output length distributions of public LLM traces (pure).

Lengths are drawn log-normal around the published medians (sigma is our assumption,
chosen to give the long right tail these traces show) and clipped to a range:

- ``chat``: Azure LLM inference trace 2023, conversation service — median prompt 1020
  tokens, median output 129 (Patel et al., "Splitwise", ISCA 2024, section III / fig. 3;
  github.com/Azure/AzurePublicDataset AzureLLMInferenceDataset2023).
- ``code``: the same trace's coding service — median prompt 1500 tokens, median output
  13 (same source).
- ``long``: Mooncake's released production trace — mean input 7,590 tokens, mean output
  182 (Qin et al., "Mooncake", FAST 2025, section 4 / table of trace statistics;
  github.com/kvcache-ai/Mooncake); medians set a little below the means.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class LengthDist:
    """A clipped log-normal length distribution."""

    median: int
    sigma: float
    low: int
    high: int

    def draw(self, rng: random.Random) -> int:
        value = round(rng.lognormvariate(math.log(self.median), self.sigma))
        return min(self.high, max(self.low, value))


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """Input and output length distributions of one kind of traffic."""

    name: str
    input: LengthDist
    output: LengthDist
    source: str


WORKLOADS: Mapping[str, Workload] = {
    w.name: w
    for w in (
        Workload("chat", LengthDist(1020, 1.0, 16, 8000), LengthDist(129, 0.9, 4, 1024),
                 "Azure LLM inference trace 2023, conversation (Splitwise, ISCA 2024)"),
        Workload("code", LengthDist(1500, 0.9, 32, 8000), LengthDist(13, 1.0, 2, 512),
                 "Azure LLM inference trace 2023, coding (Splitwise, ISCA 2024)"),
        Workload("long", LengthDist(6000, 0.7, 1024, 30000), LengthDist(150, 0.8, 8, 1024),
                 "Mooncake production trace (Mooncake, FAST 2025)"),
    )
}  # fmt: skip


def get(name: str) -> Workload:
    """The workload ``name``; ``ValueError`` listing the known ones."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
