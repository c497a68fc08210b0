"""Spillover tiers: the order in which the router fills a pool's GPU generations (part of
the RoutingPolicy spec).

A fleet often owns its fast GPUs outright (reserved or committed) and rents the rest: a
tier list says "send work to the H200s until they are 80 % utilised, then to the H100s
until 90 %, then to the A100s". Generations no tier names form one more tier after the
last. When every tier is saturated the router tries ``failureHandling.fallbackModel``,
and without one (or when it has no capacity either) routes across all tiers.
"""

from __future__ import annotations

import pydantic

from gpufleet.api import common
from gpufleet.api.common import ApiModel, cel, rules


class SpilloverTier(ApiModel):
    """One tier: its GPU generations and the utilisation at which it spills."""

    generations: tuple[common.GpuName, ...] = pydantic.Field(
        min_length=1,
        max_length=8,
        description="GPU generations of this tier.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    saturation_percent: int = pydantic.Field(
        default=80,
        ge=1,
        le=100,
        description=(
            "Mean utilisation (%) of the tier's routable endpoints at which it is saturated "
            "and requests spill to the next tier. An endpoint's utilisation is the larger "
            "of its requests in flight over its request limit and its KV-cache use "
            "(vLLM's metric when scraped, else the router's pending tokens over the "
            "planned KV capacity)."
        ),
    )

    @pydantic.field_validator("generations")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({g for g in value if value.count(g) > 1})
        if repeated:
            raise ValueError(f"generations must not repeat: {repeated}")
        return value


class Spillover(ApiModel):
    """Ordered generation tiers; empty = every generation is one tier (no spillover)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.tiers.all(t, t.generations.all(g, "
                "self.tiers.exists_one(u, g in u.generations)))",
                "tiers: a GPU generation may be named by one tier only",
                field_path=".tiers",
            )
        )
    )

    tiers: tuple[SpilloverTier, ...] = pydantic.Field(
        default=(),
        max_length=8,
        description=(
            "Tiers in the order they are filled; requests go to the first tier that is "
            "not saturated."
        ),
    )

    @pydantic.field_validator("tiers")
    @classmethod
    def _one_tier_per_generation(
        cls, value: tuple[SpilloverTier, ...]
    ) -> tuple[SpilloverTier, ...]:
        named = [g for tier in value for g in tier.generations]
        repeated = sorted({g for g in named if named.count(g) > 1})
        if repeated:
            raise ValueError(f"a GPU generation may be named by one tier only: {repeated}")
        return value
