"""Autoscaling decisions, one rule per table, with literal inputs and injected time.

Two variants unless a case says otherwise: ``a100`` ($1.5/GPU-h, prior speed 1000) and
``h100`` ($3/GPU-h, prior 1930), TP 1. Measured speeds scale the priors: a busy a100 at
900 tok/s puts the h100 at 1737, so the a100 is cheaper per token and the h100 faster.
"""

from __future__ import annotations

import dataclasses

import pytest

from gpufleet.api import modelpool
from gpufleet.controller.autoscaling import scalinginputs
from gpufleet.scaling import decide, economics, inventory, model

NO_WINDOWS = model.Policy(up_window_s=0, down_window_s=0, up_pods=100, down_pods=100)
BUSY = model.Signals(kv_usage=0.9, waiting=8, running=20, tokens_per_second=900)
CALM = model.Signals(kv_usage=0.1, waiting=0, running=2, tokens_per_second=300)
IDLE = model.Signals(kv_usage=0.0, waiting=0, running=0, tokens_per_second=0)


def _a100(**kw: object) -> model.Variant:
    base = model.Variant(
        name="a100", gpu="A100-80GB", tensor_parallel_size=1, min_replicas=0, max_replicas=10,
        replicas=1, ready=1, prior_speed=1000, signals=BUSY, cost_per_gpu_hour=1.5,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _h100(**kw: object) -> model.Variant:
    base = model.Variant(
        name="h100", gpu="H100-80GB", tensor_parallel_size=1, min_replicas=0, max_replicas=10,
        replicas=0, ready=0, prior_speed=1930, cost_per_gpu_hour=3.0,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _nodes(**free: tuple[int, ...]) -> dict[str, inventory.Generation]:
    gpus = {"a100": "A100-80GB", "h100": "H100-80GB"}
    return {
        gpus[k]: inventory.Generation(gpu=gpus[k], free_per_node=v, gpus_per_node=8)
        for k, v in free.items()
    }


def _decide(*variants: model.Variant, history: model.History | None = None, now: float = 1000,
            **pool: object) -> model.Decision:  # fmt: skip
    policy = pool.pop("policy", NO_WINDOWS)
    the_pool = model.Pool(variants=variants, policy=policy, **pool)  # type: ignore[arg-type]
    return decide.decide(the_pool, history or model.History(), now=now)


@pytest.mark.parametrize(
    ("preference", "expected"),
    [("cost", {"a100": 2, "h100": 0}), ("latency", {"a100": 1, "h100": 1}),
     ("balanced", {"a100": 1, "h100": 1})],
)  # fmt: skip
def test_a_load_step_grows_the_variant_the_preference_picks(
    preference: model.Preference, expected: dict[str, int]
) -> None:
    policy = dataclasses.replace(NO_WINDOWS, preference=preference)
    decision = _decide(_a100(), _h100(), policy=policy)
    assert decision.desired() == expected
    grown = next(v for v in decision.variants if v.desired > (1 if v.name == "a100" else 0))
    assert grown.reason.startswith("up ")


@pytest.mark.parametrize(
    ("free", "expected", "blocked"),
    [
        ({"a100": (8,), "h100": (8,)}, {"a100": 2, "h100": 0}, False),
        ({"a100": (0,), "h100": (8,)}, {"a100": 1, "h100": 1}, False),  # not onto a full generation
        ({"a100": (0,), "h100": (0, 0)}, {"a100": 1, "h100": 0}, True),
    ],
)
def test_never_onto_a_generation_without_free_gpus(
    free: dict[str, tuple[int, ...]], expected: dict[str, int], blocked: bool
) -> None:
    decision = _decide(_a100(), _h100(), inventory=_nodes(**free))
    assert decision.desired() == expected
    assert ("no variant below maxReplicas with free GPUs" in decision.summary) is blocked


def test_tp_larger_than_the_nodes_is_infeasible() -> None:
    nodes = {"H100-80GB": inventory.Generation("H100-80GB", (4, 4), gpus_per_node=4),
             "A100-80GB": inventory.Generation("A100-80GB", (8,), gpus_per_node=8)}  # fmt: skip
    decision = _decide(_a100(), _h100(tensor_parallel_size=8, min_replicas=1), inventory=nodes)
    h100 = next(v for v in decision.variants if v.name == "h100")
    assert (h100.desired, h100.feasible) == (0, False)
    assert h100.reason == "infeasible: needs 8 GPUs on one node; H100-80GB nodes have at most 4"
    assert decision.desired()["a100"] == 2


def test_no_node_of_the_generation_is_infeasible() -> None:
    decision = _decide(_a100(), _h100(min_replicas=1), inventory=_nodes(a100=(8,)))
    assert decision.variants[1].reason == "infeasible: no schedulable H100-80GB node"


@pytest.mark.parametrize(
    ("loading_since", "replicas", "expected"),
    [
        ((970.0,), 2, 2),  # loading for 30 s: coming capacity, no second scale-up
        ((600.0,), 2, 3),  # loading for 400 s > coldStartSeconds 300: replaced
        ((), 2, 2),  # asked for, no pod yet, no history: counted as coming
    ],
)
def test_loading_replicas_count_as_coming_capacity(
    loading_since: tuple[float, ...], replicas: int, expected: int
) -> None:
    variant = _a100(replicas=replicas, loading_since=loading_since)
    decision = _decide(variant, policy=dataclasses.replace(NO_WINDOWS, preference="cost"))
    assert decision.desired()["a100"] == expected


def test_max_and_min_replicas_are_kept() -> None:
    decision = _decide(_a100(max_replicas=1), _h100(max_replicas=0, min_replicas=0))
    assert decision.desired() == {"a100": 1, "h100": 0}
    assert "no variant below maxReplicas" in decision.summary
    calm = _decide(_a100(replicas=3, ready=3, min_replicas=2, signals=CALM))
    assert calm.desired() == {"a100": 2}


@pytest.mark.parametrize(
    ("a100_kv", "h100_kv", "expected"),
    [
        (0.1, 0.1, {"a100": 1, "h100": 0}),  # barely loaded: the h100 (worst $/token) first
        (0.56, 0.1, {"a100": 2, "h100": 0}),  # the a100s at 0.7 of target absorb the h100's
        (0.8, 0.8, {"a100": 2, "h100": 1}),  # all on target: nothing can go
        (0.8, 0.1, {"a100": 1, "h100": 1}),  # the h100 cannot go, but absorbs one a100
    ],
)
def test_scale_down_removes_the_worst_per_token_first_and_only_when_absorbed(
    a100_kv: float, h100_kv: float, expected: dict[str, int]
) -> None:
    a100 = _a100(replicas=2, ready=2, signals=model.Signals(a100_kv, 0, 20, 1800))
    h100 = _h100(replicas=1, ready=1, signals=model.Signals(h100_kv, 0, 10, 1737))
    assert _decide(a100, h100).desired() == expected


def test_scale_down_waits_for_the_window_then_one_pod_per_period() -> None:
    policy = model.Policy()  # 300 s down window, 1 pod per 300 s
    variant = _a100(replicas=3, ready=3, signals=CALM)
    history, seen = model.History(), []
    for now in (0, 100, 200, 301, 400, 602):
        decision = _decide(variant, policy=policy, history=history, now=now)
        seen.append(decision.desired()["a100"])
        history = decision.history
        variant = dataclasses.replace(variant, replicas=decision.desired()["a100"])
        variant = dataclasses.replace(variant, ready=variant.replicas)
    assert seen == [3, 3, 3, 2, 2, 1]


def test_scale_up_waits_for_the_window_then_two_pods_per_period() -> None:
    policy = model.Policy(up_window_s=60, up_pods=2, up_period_s=120)
    hot = model.Signals(kv_usage=1.0, waiting=40, running=50, tokens_per_second=1000)
    variant = _a100(signals=hot)
    history, seen = model.History(), []
    for now in (0, 30, 61, 100, 181):
        decision = _decide(variant, policy=policy, history=history, now=now)
        seen.append(decision.desired()["a100"])
        history = decision.history
        # the new replicas became ready at once, and the load stays 10x the target
        variant = dataclasses.replace(variant, replicas=seen[-1], ready=seen[-1])
        variant = dataclasses.replace(
            variant, signals=dataclasses.replace(hot, waiting=40 * seen[-1])
        )
    assert seen == [1, 1, 3, 3, 5]


@pytest.mark.parametrize("preference", ["cost", "latency", "balanced"])
def test_held_requests_start_the_cheapest_feasible_variant_at_once(
    preference: model.Preference,
) -> None:
    policy = model.Policy(preference=preference)  # 60 s up window: skipped from zero
    a100 = _a100(replicas=0, ready=0, signals=None)
    decision = _decide(a100, _h100(), policy=policy, demand=model.Demand(held=3))
    assert decision.desired() == {"a100": 1, "h100": 0}
    assert "3 requests waiting with nothing serving" in decision.summary
    full = _decide(a100, _h100(), policy=policy, demand=model.Demand(held=3),
                   inventory=_nodes(a100=(0,), h100=(8,)))  # fmt: skip
    assert full.desired() == {"a100": 0, "h100": 1}


@pytest.mark.parametrize(("now", "expected"), [(599, 1), (600, 0)])
def test_an_idle_pool_goes_to_zero_after_scale_to_zero_seconds(now: float, expected: int) -> None:
    policy = model.Policy(scale_to_zero_after_s=600)
    decision = _decide(_a100(signals=IDLE), policy=policy, history=model.History(active_at=0),
                       now=now)  # fmt: skip
    assert decision.desired() == {"a100": expected}
    if expected == 0:
        assert "idle 600 s" in decision.summary


def test_a_busy_pool_restarts_the_idle_clock() -> None:
    decision = _decide(_a100(signals=CALM), history=model.History(active_at=0), now=5000)
    assert decision.desired() == {"a100": 1}
    assert decision.history.active_at == 5000


def test_without_fresh_signals_every_variant_holds() -> None:
    decision = _decide(_a100(signals=None, replicas=4, ready=4), _h100(replicas=1))
    assert decision.desired() == {"a100": 4, "h100": 1}
    assert decision.summary == "holding: no fresh signals for a100"


def test_policy_from_the_pool_spec() -> None:
    policy = scalinginputs.policy(modelpool.Autoscaling())
    assert (policy.up_window_s, policy.up_pods, policy.up_period_s) == (60, 2, 120)
    assert (policy.down_window_s, policy.down_pods, policy.down_period_s) == (300, 1, 300)


@pytest.mark.parametrize(
    ("a100_tps", "a100_kv", "cheapest"),
    [
        (1000, 0.9, "a100"),  # both measured: 1.5/1000 < 3/1930
        (400, 0.9, "h100"),  # a slow a100 measured: 1.5/400 > 3/1930
        (400, 0.1, "a100"),  # a100 not busy: its prior in measured units, 1.5/1000
    ],
)
def test_price_per_token_uses_measured_speed_when_busy(
    a100_tps: float, a100_kv: float, cheapest: str
) -> None:
    a100 = _a100(signals=model.Signals(a100_kv, 0, 10, a100_tps))
    h100 = _h100(replicas=1, ready=1, signals=model.Signals(0.9, 0, 10, 1930))
    variants = [h100, a100]
    speed = economics.speeds(variants, 0.8)
    assert economics.order(variants, speed, "cost")[0].name == cheapest


@pytest.mark.parametrize(
    ("target", "ttft", "running", "expected"),
    [
        (None, 4.0, 2, 1),  # no TTFT target: CALM is on target
        (2.0, 4.0, 2, 2),  # p90 2x the target: twice the capacity asked for
        (2.0, 1.0, 2, 1),  # under the target
        (2.0, None, 2, 1),  # no TTFT samples in the last minute
        (2.0, 4.0, 0, 1),  # nothing running or waiting: the last minute says nothing
    ],
)
def test_a_ttft_target_over_its_p90_grows_the_pool(
    target: float | None, ttft: float | None, running: int, expected: int
) -> None:
    signals = dataclasses.replace(CALM, running=running, ttft_p90_s=ttft)
    policy = dataclasses.replace(NO_WINDOWS, target_ttft_s=target)
    got = _decide(_a100(signals=signals), _h100(max_replicas=0), policy=policy)
    assert got.desired()["a100"] == expected
    assert scalinginputs.policy(modelpool.Autoscaling(targetTtftSeconds=3)).target_ttft_s == 3
