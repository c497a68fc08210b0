"""How far an endpoint's latency runs past its predictions (``routing.calibration``)."""

from __future__ import annotations

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
