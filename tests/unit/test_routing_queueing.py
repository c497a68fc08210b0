"""Predicted latency rises with the load the router put on an endpoint: the prefill
ahead, the wait for KV room or a batch slot, and later prompts' prefill (table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.traffic import RequestClass, Slo
from gpufleet.routing import objective, performance, picker, queueing
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest, Signals

MODEL = "llama-3.1-8b"
PRICES = {"A100-40GB": 1.2, "H100-80GB": 2.9, "B200": 6.0}  # the A100 cheapest per token
KV = 150_000
# The interactive class of bench/router_quality.py: 0.8 s TTFT and 80 ms TPOT with headroom.
SLO = Slo(ttft_millis=1000, tpot_millis=100)
REQUEST = RoutingRequest(MODEL, 500, 200)
# llama-3.1-8b priors: prefill ~84 us per token on the A100-40GB (0.8 s ~ 9,500 tokens),
# 40 on the H100, 18 on the B200; TPOT ~13.7 + 0.17 x batch ms on the A100.
IDLE = Load()
PREFILL_AHEAD = Load(in_flight=3, pending_tokens=600, prefill_tokens=10_000, kv_tokens=11_000)
KV_FULL = Load(in_flight=60, pending_tokens=12_000, kv_tokens=200_000)
PREFILL_STREAM = Load(in_flight=10, pending_tokens=2_000, kv_tokens=30_000, prefill_per_s=10_000)
DEEP_PREFILL = Load(in_flight=5, pending_tokens=1_000, prefill_tokens=25_000, kv_tokens=27_000)
FLOODED = Load(in_flight=200, pending_tokens=60_000, kv_tokens=400_000)


def _candidate(gpu: str, load: Load) -> Candidate:
    endpoint = Endpoint(
        f"http://{gpu}", MODEL, gpu, 1, 1.0, kv_capacity_tokens=KV, cost_per_gpu_hour=PRICES[gpu]
    )
    return Candidate(endpoint, load)


def _pick(goal: str, loads: dict[str, Load]) -> str:
    policy = RoutingPolicySpec(
        pools=("p",), objective=goal, request_classes=(RequestClass(name="interactive", slo=SLO),)
    )
    candidates = [_candidate(gpu, load) for gpu, load in loads.items()]
    decision = picker.pick(REQUEST, candidates, picker.Inputs(policy))
    assert isinstance(decision, picker.Decision)
    return decision.endpoint.gpu


@pytest.mark.parametrize(
    ("a100", "h100", "b200", "expected"),
    [
        # An idle fleet: the cheapest per token.
        (IDLE, IDLE, IDLE, "A100-40GB"),
        # A loaded A100 stops meeting the SLO: the next cheapest that does.
        (PREFILL_AHEAD, IDLE, IDLE, "H100-80GB"),
        (KV_FULL, IDLE, IDLE, "H100-80GB"),
        (PREFILL_STREAM, IDLE, IDLE, "H100-80GB"),
        # The B200, dearest per token, when it is the only one predicted to meet it.
        (KV_FULL, KV_FULL, IDLE, "B200"),
        (PREFILL_AHEAD, DEEP_PREFILL, IDLE, "B200"),
        # Later prompts' prefill on the A100, a prefill backlog the H100 clears in time.
        (PREFILL_STREAM, PREFILL_STREAM, IDLE, "H100-80GB"),
        # The same load that stops the A100 leaves the faster B200 within the SLO.
        (KV_FULL, KV_FULL, PREFILL_STREAM, "B200"),
    ],
)
def test_cost_leaves_a_loaded_endpoint(a100: Load, h100: Load, b200: Load, expected: str) -> None:
    assert _pick("cost", {"A100-40GB": a100, "H100-80GB": h100, "B200": b200}) == expected


@pytest.mark.parametrize(
    ("a100", "h100", "b200", "expected"),
    [
        (IDLE, IDLE, IDLE, "B200"),
        (IDLE, IDLE, KV_FULL, "H100-80GB"),
        (IDLE, PREFILL_AHEAD, PREFILL_AHEAD, "B200"),  # 0.2 s of prefill, then the fastest
        (IDLE, FLOODED, FLOODED, "A100-40GB"),
    ],
)
def test_latency_avoids_the_queue(a100: Load, h100: Load, b200: Load, expected: str) -> None:
    assert _pick("latency", {"A100-40GB": a100, "H100-80GB": h100, "B200": b200}) == expected


def _queue(load: Load) -> queueing.Queue:
    candidate = _candidate("A100-40GB", load)
    return queueing.queue(REQUEST, candidate, performance.prior_of(candidate.endpoint))


def test_queue_of_an_idle_endpoint_is_its_own_prompt() -> None:
    assert _queue(IDLE) == queueing.Queue(500, 1, 0.0, 0.0)


def test_prefill_ahead_and_own_prompt_before_the_first_token() -> None:
    found = _queue(PREFILL_AHEAD)
    assert (found.prefill_tokens, found.batch, found.wait_s) == (10_500, 4, 0.0)


def test_kv_full_waits_for_the_share_that_must_finish_and_runs_only_what_fits() -> None:
    found = _queue(KV_FULL)
    curve = performance.prior_of(_candidate("A100-40GB", KV_FULL).endpoint)
    running = 60 * KV / 200_000  # 45 of the 60 requests fit the KV cache
    assert found.batch == pytest.approx(running + 1)
    drain_s = 12_000 / curve.tokens_per_second(running)
    assert found.wait_s == pytest.approx((200_000 + 700 - KV) / 200_000 * drain_s)
    assert found.ttft(curve) > 1.0


def test_a_full_batch_waits_for_a_slot() -> None:
    # The router's per-endpoint limit (256) stands for the engine's max_num_seqs.
    assert _queue(Load(in_flight=256, pending_tokens=40_000, kv_tokens=100_000)).wait_s > 0
    assert _queue(Load(in_flight=255, pending_tokens=40_000, kv_tokens=100_000)).wait_s == 0


def test_later_prefill_stretches_the_time_per_output_token() -> None:
    found = _queue(PREFILL_STREAM)
    curve = performance.prior_of(_candidate("A100-40GB", IDLE).endpoint)
    share = 10_000 * curve.prefill_s_per_token
    assert found.prefill_share == pytest.approx(share)
    assert found.tpot(curve) == pytest.approx(curve.tpot(11) / (1 - share))
    flood = _queue(Load(prefill_per_s=1e9))
    assert flood.prefill_share == queueing.MAX_PREFILL_SHARE


def test_fresh_engine_metrics_count_when_fuller_than_the_router_knows() -> None:
    signals = Signals(kv_usage=0.99, waiting=20, running=40)
    found = _queue(Load(in_flight=2, pending_tokens=400, kv_tokens=2_000, signals=signals))
    assert found.wait_s > 0  # another router's requests fill it
    quiet = _queue(Load(in_flight=2, pending_tokens=400, kv_tokens=2_000,
                        signals=Signals(kv_usage=0.5, waiting=20, running=40)))  # fmt: skip
    assert quiet.wait_s == 0  # waiting for prefill budget, counted as prefill ahead


def test_rate_reads_a_steady_flow_and_decays() -> None:
    rate = queueing.Rate(window_s=10.0)
    for second in range(200):
        rate.add(1_000, float(second))
    assert rate.per_second(199.0) == pytest.approx(1_000 * (1 / (1 - 2.718281828 ** -0.1)) / 10,
                                                   rel=1e-6)  # fmt: skip
    assert 950 < rate.per_second(199.5) < 1_100
    assert rate.per_second(260.0) < 10


def test_prediction_meets_slo_from_the_queue() -> None:
    candidate = _candidate("A100-40GB", KV_FULL)
    curve = performance.prior_of(candidate.endpoint)
    assert not objective.predict(REQUEST, candidate, curve, SLO).meets_slo
    assert objective.predict(REQUEST, _candidate("A100-40GB", IDLE), curve, SLO).meets_slo
