"""Learned performance curves: the catalog prior, and learning from wrong priors."""

from __future__ import annotations

import dataclasses
import random

import pytest

from gpufleet.routing import performance
from gpufleet.routing.model import Endpoint
from gpufleet.routing.performance import Curve, Predictor

TRUE = Curve(ttft_base_s=0.02, prefill_s_per_token=1e-4, tpot_base_s=0.012, tpot_per_seq_s=3e-4)


def test_prior_orders_generations_as_the_catalog_does() -> None:
    curves = {
        g: performance.prior("llama-3.1-8b", g, 1) for g in ("A100-40GB", "H100-80GB", "B200")
    }
    a100, h100, b200 = (curves[g] for g in ("A100-40GB", "H100-80GB", "B200"))
    assert a100 and h100 and b200
    assert a100.tpot(8) > h100.tpot(8) > b200.tpot(8)
    assert a100.ttft(2000) > h100.ttft(2000) > b200.ttft(2000)
    assert a100.tpot(64) > a100.tpot(1)  # decode slows with the batch


def test_prior_of_unknown_model_or_gpu_is_the_reference_scaled() -> None:
    assert performance.prior("no-such-model", "H100-80GB", 1) is None
    reference = performance.prior_of(Endpoint("r", "llama-3.1-8b", "A100-80GB", 1, 1.0))
    unknown = performance.prior_of(Endpoint("u", "no-such-model", "H100-80GB", 1, 2.0))
    assert unknown.tpot(4) == pytest.approx(reference.tpot(4) / 2)


def _feed(predictor: Predictor, truth: Curve, *, n: int, batches: range, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i in range(n):
        batch, ahead = rng.choice(batches), rng.uniform(100, 6000)
        noise = rng.uniform(0.9, 1.1)
        predictor.observe_ttft("e", prefill_tokens=ahead, seconds=truth.ttft(ahead) * noise, now=i)
        predictor.observe_tpot("e", batch=batch, seconds=truth.tpot(batch) * noise, now=i)


@pytest.mark.parametrize(
    "wrong",
    [
        TRUE.scaled(3.0),  # prior three times too fast
        TRUE.scaled(1 / 3),  # three times too slow
        Curve(0.06, 3e-5, 0.004, 9e-4),  # the wrong shape: bases and slopes 3x off, apart
    ],
)
def test_learns_the_true_curve_from_a_wrong_prior(wrong: Curve) -> None:
    predictor = Predictor(half_life_s=60)
    _feed(predictor, TRUE, n=200, batches=range(1, 48))
    learned = predictor.curve("e", wrong)
    for batch in (2, 16, 40):
        assert learned.tpot(batch) == pytest.approx(TRUE.tpot(batch), rel=0.1)
    for ahead in (500, 3000):
        assert learned.ttft(ahead) == pytest.approx(TRUE.ttft(ahead), rel=0.15)


def test_narrow_data_keep_the_scaled_priors_shape() -> None:
    predictor = Predictor()
    _feed(predictor, TRUE, n=50, batches=range(8, 9))  # the batch never changes
    learned = predictor.curve("e", TRUE.scaled(3.0))
    assert learned.tpot(8) == pytest.approx(TRUE.tpot(8), rel=0.1)
    assert learned.tpot(40) == pytest.approx(TRUE.tpot(40), rel=0.2)


def test_no_data_is_the_prior_and_a_few_samples_move_it_part_way() -> None:
    predictor = Predictor()
    wrong = TRUE.scaled(3.0)
    assert dataclasses.astuple(predictor.curve("e", wrong)) == pytest.approx(
        dataclasses.astuple(wrong)
    )
    predictor.observe_tpot("e", batch=4, seconds=TRUE.tpot(4), now=0)
    moved = predictor.curve("e", wrong).tpot(4)
    assert wrong.tpot(4) < moved <= TRUE.tpot(4) * 1.01


def test_a_slowdown_is_followed_within_a_few_half_lives() -> None:
    predictor = Predictor(half_life_s=15)
    _feed(predictor, TRUE, n=120, batches=range(1, 32))
    slow = TRUE.scaled(0.5)
    for i in range(120, 200):  # one sample a second for 80 s at half speed
        predictor.observe_tpot("e", batch=8, seconds=slow.tpot(8), now=i)
    assert predictor.curve("e", TRUE).tpot(8) == pytest.approx(slow.tpot(8), rel=0.1)
    assert predictor.samples("e") == (120, 200)
    predictor.forget("e")
    assert predictor.samples("e") == (0, 0)
