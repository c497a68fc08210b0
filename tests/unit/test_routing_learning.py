"""The throughput learner with injected time: a throttled or faster endpoint is
re-weighted within a minute from streamed and whole answers, never from one request."""

from __future__ import annotations

import pytest

from gpufleet.api.runtime import MetricNames
from gpufleet.router import learning
from gpufleet.routing import throughput

PRIOR = {"b200": 3.19, "h100-a": 1.64, "h100-b": 1.64, "a100": 1.0}
PER_REQUEST_RATE = {"b200": 95.0, "h100-a": 49.0, "h100-b": 49.0, "a100": 30.0}


def _learner() -> throughput.Learner:
    return throughput.Learner(half_life_s=throughput.DEFAULT_HALF_LIFE_S, min_samples=20)


def _minute(
    learner: throughput.Learner,
    speeds: dict[str, float],
    *,
    kind: throughput.Kind = "stream",
    start: int = 0,
    minutes: int = 1,
) -> None:
    """One request per endpoint every 2 s from ``start``, at prior speed x ``speeds``."""
    for second in range(start, start + 60 * minutes, 2):
        for endpoint, rate in PER_REQUEST_RATE.items():
            tokens = 128
            seconds = tokens / (rate * speeds.get(endpoint, 1.0))
            learner.observe(endpoint, tokens=tokens, seconds=seconds, now=second, kind=kind)


@pytest.mark.parametrize("kind", ["stream", "whole"])
@pytest.mark.parametrize(("factor", "low", "high"), [(0.5, 0.45, 0.55), (1.5, 1.4, 1.6)])
def test_an_endpoint_off_its_prior_is_reweighted_within_a_minute(
    kind: throughput.Kind, factor: float, low: float, high: float
) -> None:
    learner = _learner()
    _minute(learner, {"h100-a": factor}, kind=kind)
    weights = learner.weights(PRIOR)
    assert low * PRIOR["h100-a"] < weights["h100-a"] < high * PRIOR["h100-a"]
    for healthy in ("b200", "h100-b", "a100"):
        assert weights[healthy] == pytest.approx(PRIOR[healthy], rel=0.05)


@pytest.mark.parametrize(("factor", "low", "high"), [(0.5, 0.45, 0.56), (1.5, 1.4, 1.55)])
def test_a_change_after_ten_minutes_of_normal_service_is_reweighted_within_a_minute(
    factor: float, low: float, high: float
) -> None:
    learner = _learner()
    _minute(learner, {}, minutes=10)
    assert learner.weights(PRIOR) == pytest.approx(PRIOR, rel=0.01)
    _minute(learner, {"h100-a": factor}, start=600)
    weight = learner.weights(PRIOR)["h100-a"]
    assert low * PRIOR["h100-a"] < weight < high * PRIOR["h100-a"]


def test_after_a_long_quiet_spell_one_request_moves_the_weight_little() -> None:
    learner = _learner()
    _minute(learner, {})
    # An hour later one absurdly slow answer: the clock alone would make it the estimate.
    learner.observe("h100-a", tokens=128, seconds=128.0, now=3600)
    assert learner.weights(PRIOR)["h100-a"] > 0.85 * PRIOR["h100-a"]


def test_endpoints_running_as_their_prior_says_keep_it() -> None:
    learner = _learner()
    _minute(learner, {})
    assert learner.weights(PRIOR) == pytest.approx(PRIOR, rel=0.05)


def test_never_from_one_request_nor_before_min_samples() -> None:
    learner = _learner()
    _minute(learner, {}, kind="stream")
    learner.forget("h100-a")
    for i in range(19):
        learner.observe("h100-a", tokens=100, seconds=100.0, now=i)  # 1 tok/s: absurdly slow
    assert learner.weights(PRIOR)["h100-a"] == PRIOR["h100-a"]
    learner.observe("h100-a", tokens=100, seconds=100.0, now=20)
    assert learner.weights(PRIOR)["h100-a"] < 0.1 * PRIOR["h100-a"]


def test_stream_and_whole_rates_are_compared_only_with_their_own_kind() -> None:
    # Whole-request rates include prefill and queueing (lower); an endpoint seen only
    # through whole answers is not judged slow against others' stream rates.
    learner = _learner()
    _minute(learner, {}, kind="stream")
    for second in range(0, 60, 2):
        learner.observe("extra", tokens=128, seconds=128 / 20.0, now=second, kind="whole")
        learner.observe("a100", tokens=128, seconds=128 / 20.0, now=second, kind="whole")
    weights = learner.weights({**PRIOR, "extra": 1.0})
    assert weights["extra"] == pytest.approx(1.0, rel=0.05)


def test_forgotten_endpoint_returns_to_its_prior() -> None:
    learner = _learner()
    _minute(learner, {"a100": 0.5})
    learner.forget("a100")
    assert learner.weights(PRIOR)["a100"] == PRIOR["a100"]


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        (b'{"usage": {"prompt_tokens": 5, "completion_tokens": 42}}', 42),
        (b'{"choices": []}', None),
        (b'{"usage": {"completion_tokens": "42"}}', None),
        (b'{"usage": {"completion_tokens": true}}', None),
        (b"not json", None),
        (b"[1, 2]", None),
    ],
)
def test_completion_tokens_from_a_whole_answer(body: bytes, tokens: int | None) -> None:
    assert learning.completion_tokens(body) == tokens


def _counter_reads(learner: throughput.Learner, speeds: dict[str, float], reads: int) -> None:
    """A Prometheus read every 5 s: generated tokens/s with 8 requests running on each."""
    for read in range(reads):
        for endpoint, rate in PER_REQUEST_RATE.items():
            tokens_per_s = 8 * rate * speeds.get(endpoint, 1.0)
            learner.observe_counter(endpoint, tokens_per_s=tokens_per_s, running=8, now=5 * read)


def test_token_counters_reweight_from_three_busy_reads() -> None:
    learner = _learner()
    _counter_reads(learner, {"h100-a": 0.5}, reads=2)
    assert learner.weights(PRIOR) == PRIOR
    _counter_reads(learner, {"h100-a": 0.5}, reads=3)
    assert learner.weights(PRIOR)["h100-a"] == pytest.approx(0.5 * PRIOR["h100-a"], rel=0.02)


@pytest.mark.parametrize(
    ("tokens_per_s", "running"), [(400.0, 0.5), (0.0, 4.0), (float("nan"), 4.0), (400.0, 0.0)]
)
def test_token_counters_of_an_idle_or_unknown_engine_are_ignored(
    tokens_per_s: float, running: float
) -> None:
    learner = _learner()
    for read in range(5):
        learner.observe_counter("a100", tokens_per_s=tokens_per_s, running=running, now=read)
    assert learner.rates("counter") == {}


def test_counter_reads_pair_each_endpoints_token_rate_with_its_running_requests() -> None:
    names = MetricNames()
    rate, running = learning.counter_queries(names)
    assert rate == "rate(vllm:generation_tokens_total[1m])"
    assert running == "avg_over_time(vllm:num_requests_running[1m])"
    keys = {"10.0.0.1:8000": "http://10.0.0.1:8000", "10.0.0.2": "http://10.0.0.2:8000"}
    results = {
        rate: [
            ({"instance": "10.0.0.1:8000"}, 400.0),
            ({"pod_ip": "10.0.0.2", "gpu": "0"}, 150.0),
            ({"pod_ip": "10.0.0.2", "gpu": "1"}, 150.0),
            ({"instance": "10.9.9.9:8000"}, 999.0),
        ],
        running: [
            ({"instance": "10.0.0.1:8000"}, 8.0),
            ({"pod_ip": "10.0.0.2", "gpu": "0"}, 4.0),
            ({"pod_ip": "10.0.0.2", "gpu": "1"}, 4.0),
        ],
    }
    assert learning.counter_reads(results, names, keys) == {
        "http://10.0.0.1:8000": (400.0, 8.0),
        "http://10.0.0.2:8000": (300.0, 4.0),
    }
    assert learning.counter_reads({rate: results[rate]}, names, keys) == {}
