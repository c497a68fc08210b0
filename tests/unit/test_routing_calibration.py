"""How far an endpoint's latency runs past its predictions (``routing.calibration``)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from gpufleet.routing import calibration


def _fed(ratios: list[float], *, at: float = 0.0) -> calibration.Spread:
    spread = calibration.Spread()
    for ratio in ratios:
        spread.observe("e", "ttft", predicted=0.5, observed=0.5 * ratio, now=at)
    return spread


def test_no_margin_is_learned_from_a_few_requests() -> None:
    spread = _fed([3.0] * (calibration.MIN_SAMPLES - 1))
    assert spread.factor("e", "ttft", 0.0) is None
    assert spread.margin("e", 0.0) == calibration.DEFAULT
    assert spread.factor("other", "ttft", 0.0) is None


def test_the_margin_is_the_ninetieth_percentile_of_observed_over_predicted() -> None:
    # Twenty requests: eighteen on time, two at 2x and 3x their prediction.
    spread = _fed([1.0] * 17 + [1.5, 2.0, 3.0])
    assert spread.factor("e", "ttft", 0.0) == pytest.approx(1.5)
    assert spread.margin("e", 0.0) == calibration.Margin(ttft=1.5)
    spread.forget("e")  # the endpoint is gone: its address may come back as another pod
    assert spread.margin("e", 0.0) == calibration.DEFAULT


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.1, calibration.MIN_FACTOR), (100.0, calibration.MAX_FACTOR), (1.1, 1.1)],
)
def test_the_margin_is_bounded(ratio: float, expected: float) -> None:
    assert _fed([ratio] * 10).factor("e", "ttft", 0.0) == pytest.approx(expected)


def test_old_ratios_age_out_and_only_the_window_counts() -> None:
    spread = _fed([3.0] * 20, at=0.0)
    assert spread.factor("e", "ttft", calibration.MAX_AGE_S + 1) is None
    spread = _fed([3.0] * calibration.WINDOW + [1.0] * calibration.WINDOW)
    assert spread.factor("e", "ttft", 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("predicted", "observed"), [(0.0, 1.0), (1.0, 0.0), (float("nan"), 1.0)])
def test_meaningless_samples_are_ignored(predicted: float, observed: float) -> None:
    spread = calibration.Spread()
    for _ in range(20):
        spread.observe("e", "tpot", predicted=predicted, observed=observed, now=0.0)
    assert spread.factor("e", "tpot", 0.0) is None


def test_a_class_tightens_on_misses_and_relaxes_on_requests_that_met_it() -> None:
    attainment = calibration.Attainment()
    assert attainment.factor("interactive") == 1.0
    attainment.observe("interactive", met=False)
    up = math.exp(calibration.STEP * calibration.TARGET_ATTAINMENT)
    assert attainment.factor("interactive") == pytest.approx(up)
    attainment.observe("interactive", met=True)
    down = math.exp(-calibration.STEP * (1 - calibration.TARGET_ATTAINMENT))
    assert attainment.factor("interactive") == pytest.approx(up * down)
    assert attainment.factor("batch") == 1.0  # classes apart
    assert attainment.factors() == {"interactive": pytest.approx(up * down)}


def test_tightening_stays_within_one_and_its_bound() -> None:
    attainment = calibration.Attainment()
    for _ in range(100):
        attainment.observe("a", met=False)
        attainment.observe("b", met=True)
    assert attainment.factor("a") == calibration.MAX_TIGHTENING
    assert attainment.factor("b") == 1.0


def test_tightening_settles_where_the_target_share_meets_the_slo() -> None:
    # A world where a request misses its SLO with a probability that falls as the
    # class is tightened (fewer requests placed at the SLO's edge): 40 % untightened,
    # none at 2x. The factor settles where about 5 % miss.
    rng = random.Random(7)
    attainment = calibration.Attainment()
    outcomes, factors = [], []
    for _ in range(20_000):
        miss_chance = max(0.0, 0.4 * (2.0 - attainment.factor("interactive")))
        missed = rng.random() < miss_chance
        attainment.observe("interactive", met=not missed)
        outcomes.append(missed)
        factors.append(attainment.factor("interactive"))
    late = outcomes[5_000:]
    assert sum(late) / len(late) == pytest.approx(1 - calibration.TARGET_ATTAINMENT, abs=0.01)
    # 5 % missing is a factor of 1.875 in this world; each miss moves it by 10 %.
    assert statistics.fmean(factors[5_000:]) == pytest.approx(1.875, abs=0.05)


def test_a_tightened_margin_scales_both_measures() -> None:
    assert calibration.Margin(1.5, 2.0).tightened(2.0) == calibration.Margin(3.0, 4.0)
