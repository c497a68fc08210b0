"""Admission, circuit breaker and throughput learning over literal clocks."""

from __future__ import annotations

import pytest

from gpufleet.api.admission import Tenant
from gpufleet.api.common import SecretKeyRef
from gpufleet.api.runtime import CircuitBreaker
from gpufleet.routing import admission, breaker, throughput, waitqueue


def test_keyring() -> None:
    ring = admission.KeyRing({"acme": "k-1", "zeta": "k-2"})
    assert ring.tenant("k-2") == "zeta"
    assert ring.tenant(None) is None
    with pytest.raises(admission.UnknownKey):
        ring.tenant("k-3")


@pytest.mark.parametrize(
    ("takes", "expected_waits"),
    [
        ([(0.0, 60), (0.0, 60)], [0.0, 60.0]),
        # A request above one minute's quota is charged one minute: it empties a full
        # bucket, no more (no debt of days for everyone after it).
        ([(0.0, 100), (1.0, 10)], [0.0, 9.0]),
        ([(0.0, 100), (30.0, 10)], [0.0, 0.0]),
        ([(0.0, 10**9), (0.0, 1)], [0.0, 1.0]),
        ([(0.0, 30), (0.0, 30), (0.0, 30), (15.0, 30)], [0.0, 0.0, 30.0, 15.0]),
    ],
)
def test_token_bucket(takes: list[tuple[float, int]], expected_waits: list[float]) -> None:
    bucket = admission.TokenBucket.full(60, 0.0)
    waits = [bucket.take(tokens, now) for now, tokens in takes]
    assert waits == pytest.approx(expected_waits)


def _tenant(name: str, **kw: object) -> Tenant:
    return Tenant(name=name, api_key_secret_ref=SecretKeyRef(name="s"), **kw)  # type: ignore[arg-type]


def test_quotas_concurrency_and_rate() -> None:
    quotas = admission.Quotas(
        {"a": _tenant("a", max_concurrent_requests=1), "b": _tenant("b", tokens_per_minute=100)},
        anonymous_tokens_per_minute=None,
    )
    assert quotas.admit("a", 10, 0.0).admitted
    blocked = quotas.admit("a", 10, 0.0)
    assert not blocked.admitted and "in flight" in blocked.reason
    quotas.release("a")
    assert quotas.admit("a", 10, 0.0).admitted
    assert quotas.admit("b", 100, 0.0).admitted
    over = quotas.admit("b", 50, 0.0)
    assert not over.admitted and over.retry_after_s == pytest.approx(30.0)
    assert quotas.admit("anonymous", 10**9, 0.0).admitted
    assert quotas.in_flight("b") == 1


@pytest.mark.parametrize(
    ("charged", "used", "level"),
    [
        (60, 20, 40.0),  # over-estimated: the rest comes back
        (20, 20, 40.0),  # as estimated
        (10, 70, -10.0),  # under-estimated: the difference is taken, into debt
        (10, 10**6, -60.0),  # ... the debt bounded by one minute's quota
        (60, 0, 60.0),  # no answer: all of it back
    ],
)
def test_bucket_settles_its_charge(charged: float, used: float, level: float) -> None:
    bucket = admission.TokenBucket.full(60, 0.0)
    assert bucket.take(charged, 0.0) == 0.0
    bucket.settle(charged, used, 0.0)
    assert bucket.level == pytest.approx(level)


@pytest.mark.parametrize(
    ("status", "usage", "expected"),
    [
        (200, 513, 513.0),
        (None, None, 0.0),  # refused or failed before any answer
        (400, None, 0.0),  # the model server refused it
        (504, None, 0.0),
        (200, None, None),  # served, usage unknown (a stream the client left): it stands
        (200, 0, 0.0),
    ],
)
def test_used_tokens(status: int | None, usage: int | None, expected: float | None) -> None:
    assert admission.used_tokens(status, usage) == expected


def test_a_refused_giant_leaves_the_shared_bucket_as_it_was() -> None:
    """One anonymous request of 128 x 1e6 tokens, answered 400, left every anonymous
    client waiting 21 hours: now it is charged one minute and given it back."""
    quotas = admission.Quotas({}, anonymous_tokens_per_minute=6000)
    giant = quotas.admit("anonymous", 128 * 10**6, 0.0)
    assert giant.admitted and giant.charged == 6000
    quotas.release("anonymous")
    quotas.settle("anonymous", giant.charged, admission.used_tokens(400, None), 0.0)
    assert quotas.admit("anonymous", 500, 0.0).admitted


def test_settlement_trues_up_an_estimate_within_a_minute_of_debt() -> None:
    quotas = admission.Quotas({"b": _tenant("b", tokens_per_minute=600)}, None)
    small = quotas.admit("b", 513, 0.0)  # no max_tokens: the estimate is small
    quotas.settle("b", small.charged, 20_005, 0.0)  # the model server reported 20,005
    late = quotas.admit("b", 10, 0.0)
    assert not late.admitted
    assert late.retry_after_s == pytest.approx((600 + 10) / 10)  # a minute of debt, no more
    quotas.settle("b", 0.0, 100, 0.0)  # nothing charged: nothing to settle
    quotas.settle("nobody", 10.0, 0, 0.0)  # no bucket: nothing happens


@pytest.mark.parametrize(
    ("size", "pushes", "shed", "order"),
    [
        (3, [10, 100, 10], [None, None, None], [100, 10, 10]),
        (2, [10, 100, 50], [None, None, 0], [100, 50]),
        (2, [100, 100, 10], [None, None, 2], [100, 100]),
        (0, [10], [0], []),
    ],
)
def test_wait_queue(size: int, pushes: list[int], shed: list[int | None], order: list[int]) -> None:
    queue = waitqueue.WaitQueue(size)
    tickets = []
    for priority, expect in zip(pushes, shed, strict=True):
        ticket, dropped = queue.push(priority, 0.0)
        tickets.append(ticket)
        assert dropped == (None if expect is None else tickets[expect])
    assert [t.priority for t in queue.in_order()] == order
    served = []
    while (head := queue.head()) is not None:
        served.append(head.priority)
        queue.remove(head)
    assert served == order
    assert len(queue) == 0


def test_fifo_queue_ignores_priority() -> None:
    queue = waitqueue.WaitQueue(5, order="fifo")
    first, _ = queue.push(1, 0.0)
    queue.push(100, 0.0)
    assert queue.head() == first


def test_breaker_lifecycle() -> None:
    b = breaker.Breaker(CircuitBreaker(consecutive_failures=2, open_seconds=10))
    b.on_failure(0.0)
    assert b.state(0.0) == "closed"
    b.on_failure(1.0)
    assert (b.state(5.0), b.probe_available(5.0)) == ("open", False)
    assert (b.state(11.0), b.probe_available(11.0)) == ("half-open", True)
    b.on_attempt(11.0)
    assert not b.probe_available(11.0)
    b.on_failure(12.0)
    assert b.state(12.0) == "open"
    b.on_attempt(22.5)
    b.on_success()
    assert (b.state(23.0), b.failures) == ("closed", 0)


def _half_open() -> breaker.Breaker:
    b = breaker.Breaker(CircuitBreaker(consecutive_failures=1, open_seconds=10))
    b.on_failure(0.0)
    return b


def test_probe_without_a_verdict_gives_its_slot_back() -> None:
    b = _half_open()
    probe = b.on_attempt(11.0)  # then cancelled, or answered 429/503: no verdict
    assert not b.probe_available(11.0)
    b.release(probe)
    assert (b.state(12.0), b.probe_available(12.0)) == ("half-open", True)


def test_release_after_a_verdict_takes_nothing_from_a_later_opening() -> None:
    b = _half_open()
    first = b.on_attempt(11.0)
    b.on_failure(11.5)  # the probe failed: open again, probes reset
    second = b.on_attempt(22.0)  # a probe of the new half-open period
    b.release(first)
    assert not b.probe_available(22.0)
    b.release(second)
    assert b.probe_available(22.0)


def test_closed_attempts_take_no_probe() -> None:
    b = breaker.Breaker(CircuitBreaker(consecutive_failures=1, open_seconds=10))
    attempt = b.on_attempt(0.0)
    b.on_failure(1.0)
    b.release(attempt)
    assert (b.state(12.0), b.probe_available(12.0), b.probes) == ("half-open", True, 0)


@pytest.mark.parametrize(
    ("statuses", "served", "follows"),
    [
        ([500, 500], False, True),  # every endpoint tried failed it alike: the request
        ([502, 502, 502], False, True),
        ([500, 500], True, False),  # another endpoint served it: the endpoints failed
        ([500, 502], False, False),  # different failures: the endpoints
        ([500], False, False),  # one try tells nothing: the endpoint, as always
        ([], False, False),
    ],
)
def test_failures_that_follow_the_request(statuses: list[int], served: bool, follows: bool) -> None:
    assert breaker.follows_request(statuses, served=served) is follows


def test_success_resets_consecutive_count() -> None:
    b = breaker.Breaker(CircuitBreaker(consecutive_failures=2))
    b.on_failure(0.0)
    b.on_success()
    b.on_failure(1.0)
    assert b.state(1.0) == "closed"


def test_learner_scales_relative_to_catalog() -> None:
    learner = throughput.Learner(half_life_s=60, min_samples=2)
    catalog = {"fast": 1.0, "slow": 1.0, "new": 2.0}
    for now in (0.0, 1.0):
        learner.observe("fast", tokens=300, seconds=1.0, now=now)
        learner.observe("slow", tokens=100, seconds=1.0, now=now)
    learner.observe("new", tokens=500, seconds=1.0, now=1.0)
    learner.observe("slow", tokens=1, seconds=1.0, now=1.0)  # one token: not a rate
    weights = learner.weights(catalog)
    assert weights == pytest.approx({"fast": 1.5, "slow": 0.5, "new": 2.0})
    learner.forget("fast")
    assert learner.weights(catalog)["slow"] == pytest.approx(1.0)
