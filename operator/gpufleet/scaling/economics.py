"""Which variant is cheapest per token, fastest, or best of both. Pure.

A replica's speed is its measured generated tokens per second when its variant is busy
(KV-cache usage at least ``BUSY_SHARE`` of the target, so the figure reflects the GPU
and not a lack of requests); otherwise the catalog prior scaled to the measured
variants' units (the mean measured/prior ratio; 1 when none is measured). Price per
token = price x TP / speed. An unpriced variant ranks after every priced one; when
none has a price, GPU-time per token decides. ``balanced`` takes the variant with the
least product of its price per token and its slowness, each relative to the best.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from gpufleet.scaling import model

BUSY_SHARE = 0.5


def measured_speed(variant: model.Variant, target_kv_usage: float) -> float | None:
    """Tokens per second of one ready replica, when busy enough to tell."""
    s = variant.signals
    if s is None or variant.ready == 0 or s.tokens_per_second <= 0:
        return None
    busy = s.kv_usage >= BUSY_SHARE * target_kv_usage
    return s.tokens_per_second / variant.ready if busy else None


def speeds(variants: Iterable[model.Variant], target_kv_usage: float) -> dict[str, float]:
    """Each variant's replica speed: measured, else the prior in measured units."""
    variants = list(variants)
    measured = {v.name: measured_speed(v, target_kv_usage) for v in variants}
    ratios = [m / v.prior_speed for v in variants if (m := measured[v.name]) and v.prior_speed > 0]
    scale = sum(ratios) / len(ratios) if ratios else 1.0
    return {v.name: measured[v.name] or v.prior_speed * scale for v in variants}


def cost_per_token(variant: model.Variant, speed: float, *, priced: bool) -> float:
    """$ per token (GPU-seconds per token when no variant is ``priced``); inf when this
    one has no price but others do, or no speed."""
    if speed <= 0:
        return math.inf
    if not priced:
        return variant.tensor_parallel_size / speed
    if variant.cost_per_gpu_hour is None:
        return math.inf
    return variant.cost_per_gpu_hour * variant.tensor_parallel_size / speed / 3600


def order(
    variants: Iterable[model.Variant], speed: Mapping[str, float], preference: model.Preference
) -> list[model.Variant]:
    """Variants best first for ``preference`` (ties: the order given)."""
    variants = list(variants)
    priced = any(v.cost_per_gpu_hour is not None for v in variants)
    cost = {v.name: cost_per_token(v, speed[v.name], priced=priced) for v in variants}
    if preference == "cost":
        return sorted(variants, key=lambda v: cost[v.name])
    if preference == "latency":
        return sorted(variants, key=lambda v: -speed[v.name])
    best_cost = min((c for c in cost.values() if c > 0), default=1.0)
    fastest = max(speed.values(), default=1.0)

    def balanced(v: model.Variant) -> float:
        return (cost[v.name] / best_cost) * (fastest / max(speed[v.name], 1e-9))

    return sorted(variants, key=balanced)


def describe(variant: model.Variant, speed: float, *, priced: bool) -> str:
    """ "$0.0000021/token at 1450 tok/s" — the figures a reason quotes."""
    cost = cost_per_token(variant, speed, priced=priced)
    unit = "$/token" if priced else "GPU-s/token"
    shown = "unpriced" if math.isinf(cost) else f"{cost:.3g} {unit}"
    return f"{shown} at {speed:.0f} tok/s"
