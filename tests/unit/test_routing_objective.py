"""The cost strategy's objectives over predicted latency and price (table-driven)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.traffic import RequestClass, ScorerWeights, Slo
from gpufleet.routing import calibration, objective, performance, picker
from gpufleet.routing.model import Candidate, Endpoint, Load, Resident, RoutingRequest

MODEL = "llama-3.1-8b"
# $ per GPU-hour: the A100 is the cheapest per token, the B200 the dearest.
PRICES = {"A100-40GB": 1.0, "H100-80GB": 3.0, "B200": 6.0}
# llama-3.1-8b's prior: TPOT at batch b is about 13.7 + 0.17 b ms on the A100-40GB,
# 6.8 + 0.11 b on the H100, 3.9 + 0.09 b on the B200.
TIGHT = Slo(tpot_millis=20)  # 16 ms with headroom: the A100 up to a batch of about 13


def _candidate(gpu: str, *, in_flight: int = 0, price: bool = True) -> Candidate:
    endpoint = Endpoint(
        f"http://{gpu}", MODEL, gpu, 1, 1.0, cost_per_gpu_hour=PRICES[gpu] if price else None
    )
    return Candidate(endpoint, Load(in_flight=in_flight, pending_tokens=in_flight * 100.0))


def _policy(goal: str, slo: Slo = TIGHT, **weights: float) -> RoutingPolicySpec:
    return RoutingPolicySpec(
        pools=("p",),
        objective=goal,
        request_classes=(RequestClass(name="interactive", slo=slo), RequestClass(name="batch")),
        scorer_weights=ScorerWeights(**weights) if weights else ScorerWeights(),
    )


def _pick(
    policy: RoutingPolicySpec, candidates: list[Candidate], klass: str = "interactive"
) -> str:
    request = RoutingRequest(MODEL, 500, 200, klass=klass)
    decision = picker.pick(request, candidates, picker.Inputs(policy))
    assert isinstance(decision, picker.Decision)
    return decision.endpoint.gpu


@pytest.mark.parametrize(
    ("goal", "loads", "klass", "expected"),
    [
        # cost: the cheapest per token that meets the SLO ...
        ("cost", {"A100-40GB": 0, "H100-80GB": 0, "B200": 0}, "interactive", "A100-40GB"),
        # ... the next cheapest once the A100's batch would miss the TPOT bound ...
        ("cost", {"A100-40GB": 20, "H100-80GB": 0, "B200": 0}, "interactive", "H100-80GB"),
        ("cost", {"A100-40GB": 20, "H100-80GB": 90, "B200": 0}, "interactive", "B200"),
        # ... and a class without an SLO always the cheapest.
        ("cost", {"A100-40GB": 200, "H100-80GB": 0, "B200": 0}, "batch", "A100-40GB"),
        # latency: the least predicted TTFT + decode, whatever the price.
        ("latency", {"A100-40GB": 0, "H100-80GB": 0, "B200": 0}, "interactive", "B200"),
        ("latency", {"A100-40GB": 0, "H100-80GB": 0, "B200": 150}, "interactive", "H100-80GB"),
    ],
)
def test_objective_picks(goal: str, loads: dict[str, int], klass: str, expected: str) -> None:
    candidates = [_candidate(g, in_flight=n) for g, n in loads.items()]
    assert _pick(_policy(goal), candidates, klass) == expected


@pytest.mark.parametrize(
    "loads",
    [
        {"A100-40GB": 200, "H100-80GB": 200, "B200": 200},  # none meets the SLO
        {"A100-40GB": 200, "H100-80GB": 120, "B200": 60},
    ],
)
def test_cost_decides_as_balanced_when_the_fleet_is_full(loads: dict[str, int]) -> None:
    """No slack left (none meets the SLO, or the mean utilisation is past FULL): price
    gives way to the scorers' sum."""
    candidates = [_candidate(g, in_flight=n) for g, n in loads.items()]
    balanced = _pick(_policy("balanced"), candidates)
    assert _pick(_policy("cost"), candidates) == balanced


@pytest.mark.parametrize(
    ("fill", "band"),
    [
        (0.0, 1.05),
        (0.5, 1.05),
        (0.675, 2.1),
        (0.8, 7.35),
        (0.85, math.inf),
        (1.3, math.inf),
    ],
)
def test_the_price_band_widens_as_the_fleet_fills(fill: float, band: float) -> None:
    assert objective.price_band(fill) == pytest.approx(band)


def test_cost_gives_up_price_for_the_scorers_only_as_the_fleet_fills() -> None:
    """Two candidates that meet the SLO, the dearer one better by the scorers: the
    cheaper wins with slack, the better one once the fleet is full."""
    cheap, dear = (
        objective.Prediction(0.1, 0.01, 1e-4, 1.0, True),
        objective.Prediction(0.1, 0.01, 1e-4, 3.0, True),
    )
    request = RoutingRequest(MODEL, 500, 200)
    picks = [objective.choose("cost", request, [cheap, dear], [0.2, 0.9], fill=f)
             for f in (0.1, 0.6, 0.8, 0.9)]  # fmt: skip
    assert picks == [0, 0, 1, 1]


def test_balanced_with_only_the_cost_scorer_is_the_cheapest() -> None:
    zero = ("load", "kv_cache", "queue", "prefix_affinity", "session_affinity")
    weights = dict.fromkeys((*zero, "class_preference"), 0.0) | {"cost": 1.0}
    policy = RoutingPolicySpec(pools=("p",), scorer_weights=ScorerWeights(**weights))
    candidates = [_candidate(g) for g in PRICES]
    assert _pick(policy, candidates) == "A100-40GB"


def test_unpriced_endpoints_rank_by_gpu_time_or_after_the_priced() -> None:
    unpriced = [_candidate(g, price=False) for g in PRICES]
    # No prices at all: GPU-seconds per token, where the B200 is the cheapest.
    assert _pick(_policy("cost"), unpriced) == "B200"
    # Some priced: an unpriced endpoint is dearer than any priced one.
    mixed = [_candidate("H100-80GB"), _candidate("B200", price=False)]
    assert _pick(_policy("cost"), mixed) == "H100-80GB"


def test_learned_curves_override_the_prior() -> None:
    # The A100 is throttled to a third: its learned curve misses the SLO idle.
    a100, h100 = _candidate("A100-40GB"), _candidate("H100-80GB")
    slow = performance.prior_of(a100.endpoint).scaled(1 / 3)
    request = RoutingRequest(MODEL, 500, 200)
    inputs = picker.Inputs(_policy("cost"), curves={a100.id: slow})
    decision = picker.pick(request, [a100, h100], inputs)
    assert isinstance(decision, picker.Decision) and decision.endpoint.gpu == "H100-80GB"


@pytest.mark.parametrize(
    ("slo", "ttft_s", "tpot_s", "meets"),
    [
        (None, 9.0, 9.0, True),
        (Slo(), 9.0, 9.0, True),
        (Slo(ttft_millis=1000), 1.0, 1.0, True),  # at the bound
        (Slo(ttft_millis=1000), 1.01, 0.001, False),
        (Slo(tpot_millis=100), 0.1, 0.101, False),
        (Slo(end_to_end_seconds=10), 1.0, 0.04, True),  # 1 + 200 x 0.04 = 9 s
        (Slo(end_to_end_seconds=10), 1.0, 0.05, False),  # 11 s
    ],
)
def test_meets(slo: Slo | None, ttft_s: float, tpot_s: float, meets: bool) -> None:
    assert objective.meets(slo, ttft_s, tpot_s, 200) is meets


def test_objective_needs_the_cost_strategy() -> None:
    with pytest.raises(ValueError, match="objective cost needs strategy cost"):
        RoutingPolicySpec(pools=("p",), strategy="least-request", objective="cost")


def test_cost_packs_requests_onto_a_busy_replica_until_its_slo() -> None:
    # Two A100s: a token costs its share of the batch it joins, so the busy one is the
    # cheaper while it still meets the SLO; past that the idle one takes the request.
    def two(busy: int) -> list[Candidate]:
        idle = _candidate("A100-40GB")
        running = _candidate("A100-40GB", in_flight=busy)
        running = Candidate(dataclasses.replace(running.endpoint, id="http://busy"), running.load)
        return [idle, running]

    request = RoutingRequest(MODEL, 500, 200, klass="interactive")
    for busy, expected in ((5, "http://busy"), (20, "http://A100-40GB")):
        decision = picker.pick(request, two(busy), picker.Inputs(_policy("cost")))
        assert isinstance(decision, picker.Decision) and decision.endpoint.id == expected
        assert decision.prediction is not None and decision.prediction.meets_slo


def test_a_learned_margin_moves_cost_off_an_endpoint_that_runs_past_its_predictions() -> None:
    a100, h100 = _candidate("A100-40GB"), _candidate("H100-80GB")
    request = RoutingRequest(MODEL, 500, 200, klass="interactive")
    plain = picker.pick(request, [a100, h100], picker.Inputs(_policy("cost")))
    assert isinstance(plain, picker.Decision) and plain.endpoint.gpu == "A100-40GB"
    # The A100's streams ran 1.6x its predicted TPOT at the 90th percentile: 13.9 ms
    # predicted reads 22 ms, past the 20 ms bound.
    margins = {a100.id: calibration.Margin(ttft=1.0, tpot=1.6)}
    moved = picker.pick(request, [a100, h100], picker.Inputs(_policy("cost"), margins=margins))
    assert isinstance(moved, picker.Decision) and moved.endpoint.gpu == "H100-80GB"


# The A100-40GB prior prefills about 84 us per prompt token: a 4,096-token prompt holds
# the steps of the sequences running beside it for about 0.34 s.
@pytest.mark.parametrize(
    ("residents", "prompt", "spared"),
    [
        ((), 30_000, True),
        # 2 tokens x (100 - 15 ms) = 0.17 s to spare: a 1,000-token prompt fits ...
        (((0.1, 2, 0.0),), 1_000, True),
        # ... a 4,096-token one does not ...
        (((0.1, 2, 0.0),), 4_096, False),
        # ... nor a 1,000-token one after 1,500 tokens of prompts sent since it started.
        (((0.1, 2, 1_500.0),), 1_000, False),
        # A long answer has the time to spare; every resident must keep its bound.
        (((0.1, 400, 0.0),), 4_096, True),
        (((0.1, 400, 0.0), (0.1, 2, 0.0)), 4_096, False),
        # One output token: no TPOT to keep.
        (((0.1, 1, 0.0),), 30_000, True),
    ],
)
def test_spares(residents: tuple[tuple[float, int, float], ...], prompt: int, spared: bool) -> None:
    # Each resident is (TPOT bound, output tokens, prompt tokens sent there since it).
    curve = performance.prior(MODEL, "A100-40GB", 1)
    assert curve is not None
    sent = 10_000.0
    load = Load(
        residents=tuple(Resident(b, n, sent - since) for b, n, since in residents),
        prompt_tokens_sent=sent,
    )
    margin = calibration.Margin(ttft=1.0, tpot=1.0)
    stall = prompt * curve.prefill_s_per_token
    assert objective.spares(load, stall, 0.015, curve, margin) is spared


def test_cost_places_a_long_prompt_away_from_short_answers_it_would_stall() -> None:
    # The A100 is the cheaper while it decodes two short interactive answers; a long
    # prompt there would hold their tokens past the 100 ms TPOT bound, so it goes to the
    # H100, where its prefill is shorter; a short prompt still joins the A100's batch.
    slo = Slo(ttft_millis=5_000, tpot_millis=100)
    residents = (Resident(0.1, 3, 0.0), Resident(0.1, 50, 0.0))
    a100 = _candidate("A100-40GB", in_flight=2)
    a100 = Candidate(a100.endpoint, dataclasses.replace(a100.load, residents=residents))
    h100 = _candidate("H100-80GB", in_flight=2)
    margins = {c.id: calibration.Margin(1.0, 1.0) for c in (a100, h100)}
    inputs = picker.Inputs(_policy("cost", slo), margins=margins)
    for prompt, expected in ((500, "A100-40GB"), (8_000, "H100-80GB")):
        request = RoutingRequest(MODEL, prompt, 100, klass="interactive")
        decision = picker.pick(request, [a100, h100], inputs)
        assert isinstance(decision, picker.Decision) and decision.endpoint.gpu == expected


def _p(ttft_s: float, tpot_s: float) -> objective.Prediction:
    return objective.Prediction(ttft_s, tpot_s, 1e-4, 1.0, True)


ONE = calibration.Margin(1.0, 1.0)


@pytest.mark.parametrize(
    ("slo", "now", "idle", "expected"),
    [
        (None, _p(0.5, 0.05), _p(0.1, 0.01), None),  # no SLO: no headroom to fill
        (Slo(), _p(0.5, 0.05), _p(0.1, 0.01), None),
        (Slo(ttft_millis=1000), _p(0.1, 0.01), _p(0.1, 0.01), 0.0),  # idle
        (Slo(ttft_millis=1000), _p(0.55, 0.01), _p(0.1, 0.01), 0.5),  # half the headroom
        (Slo(ttft_millis=1000), _p(1.9, 0.01), _p(0.1, 0.01), 2.0),  # past the bound
        (Slo(ttft_millis=1000, tpot_millis=20), _p(0.1, 0.018), _p(0.1, 0.01), 0.8),  # max
        (Slo(tpot_millis=9), _p(0.1, 0.02), _p(0.1, 0.0137), None),  # misses it even idle
        (Slo(end_to_end_seconds=10), _p(1.0, 0.02), _p(0.5, 0.01), 2.5 / 7.5),  # 200 tokens
    ],
)
def test_pressure_is_the_share_of_the_headroom_under_the_slo_the_queue_takes(
    slo: Slo | None, now: objective.Prediction, idle: objective.Prediction, expected: float | None
) -> None:
    got = objective.pressure(now, idle, slo, ONE, 200)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("pressures", "fill"),
    [([], 0.0), ([None, None], 0.0), ([0.2, None, 0.6], 0.4), ([5.0, 0.0, 0.0], 1 / 3)],
)
def test_fill_is_the_mean_pressure_of_the_candidates_that_have_one(
    pressures: list[float | None], fill: float
) -> None:
    assert objective.fill(pressures) == pytest.approx(fill)
