"""A lease's prompt is prefill ahead of later requests until its first token."""

from __future__ import annotations

from gpufleet.api.runtime import CircuitBreaker
from gpufleet.router.registry import Registry
from gpufleet.routing.model import Endpoint


def _registry() -> Registry:
    registry = Registry(CircuitBreaker(), clock=lambda: 0.0)
    registry.replace([Endpoint("http://a", "m", "H100-80GB", 1, 1.0)])
    return registry


def test_prefill_ahead_counts_prompts_without_a_first_token() -> None:
    registry = _registry()
    first = registry.lease("http://a", 10.0, prefill=300)
    second = registry.lease("http://a", 10.0, prefill=200)
    assert (first.prefill_ahead, first.batch) == (300, 1)
    assert (second.prefill_ahead, second.batch) == (500, 2)  # its own prompt included
    first.first_token()
    assert registry.candidates()[0].load.prefill_tokens == 200
    second.release()  # released before its first token: its prompt leaves too
    first.release()
    load = registry.candidates()[0].load
    assert (load.prefill_tokens, load.in_flight, load.pending_tokens) == (0, 0, 0)


def test_kv_tokens_are_held_until_release_and_prompts_make_a_rate() -> None:
    now = [0.0]
    registry = Registry(CircuitBreaker(), clock=lambda: now[0])
    registry.replace([Endpoint("http://a", "m", "H100-80GB", 1, 1.0, kv_capacity_tokens=1_000)])
    first = registry.lease("http://a", 10.0, prefill=300, kv=600)
    second = registry.lease("http://a", 10.0, prefill=300, kv=600)
    load = registry.candidates()[0].load
    assert load.kv_tokens == 1_200 and load.prefill_per_s > 0
    assert not first.waited_for_kv and second.waited_for_kv  # 1,200 > 1,000
    first.first_token()
    assert registry.candidates()[0].load.kv_tokens == 1_200  # held until it ends
    first.release()
    second.release()
    assert registry.candidates()[0].load.kv_tokens == 0
    now[0] = 300.0
    assert registry.candidates()[0].load.prefill_per_s < 1e-6


def test_a_request_with_a_tpot_bound_is_a_resident_that_counts_later_prompts() -> None:
    registry = _registry()
    bounded = registry.lease("http://a", 10.0, prefill=300, tpot=(0.1, 40))
    registry.lease("http://a", 10.0, prefill=200)  # no TPOT bound: no resident
    later = registry.lease("http://a", 10.0, prefill=500, tpot=(0.05, 8))
    load = registry.candidates()[0].load
    residents = sorted(load.residents, key=lambda r: r.output_tokens)
    # Its own prompt is not a stall on itself; every prompt sent after it is.
    seen = [(r.tpot_bound_s, r.output_tokens, load.prompt_tokens_sent - r.sent_before)
            for r in residents]  # fmt: skip
    assert seen == [
        (0.05, 8, 0.0), (0.1, 40, 700.0),
    ]  # fmt: skip
    bounded.release()
    bounded.release()  # idempotent
    later.release()
    assert registry.candidates()[0].load.residents == ()


def test_an_endpoint_gone_for_good_is_forgotten_once_its_requests_end() -> None:
    registry = _registry()
    forgotten: list[str] = []
    registry.forgetters.append(forgotten.append)
    lease = registry.lease("http://a", 10.0)
    registry.replace([Endpoint("http://b", "m", "H100-80GB", 1, 1.0)])
    assert forgotten == []  # still draining its request
    lease.release()
    registry.replace([Endpoint("http://b", "m", "H100-80GB", 1, 1.0)])
    assert forgotten == ["http://a"]
    registry.replace([])  # no request in flight: gone at once
    assert forgotten == ["http://a", "http://b"]
