"""The continuous-batching engine: queueing, prefix cache, preemption, determinism."""

from __future__ import annotations

import pytest

from gpufleet.planning import perfmodel
from gpufleet.sim import offline, replica
from gpufleet.sim.engine import Engine, EngineConfig, Request, TokenEvent

PERF = replica.build(replica.ReplicaSpec("llama-3.1-8b", "H100-80GB", 1, max_model_len=8192)).perf


def _engine(num_blocks: int = 1000, **kw: int | bool) -> Engine:
    config = EngineConfig(num_blocks=num_blocks, max_model_len=8192, **kw)  # type: ignore[arg-type]
    return Engine(config, PERF)


def _drain(engine: Engine, limit: int = 100_000) -> list[tuple[float, TokenEvent]]:
    now, seen = 0.0, []
    for _ in range(limit):
        if not engine.has_work:
            break
        result = engine.step()
        now += result.duration
        seen += [(now, e) for e in result.events]
    return seen


def test_requests_queue_when_the_kv_cache_is_full() -> None:
    engine = _engine(num_blocks=40)  # 640 tokens
    for i in range(4):
        engine.add(Request(f"r{i}", 256, 16))
    engine.step()
    assert engine.num_running == 2
    assert engine.num_waiting == 2
    assert engine.kv_usage >= 0.8
    events = _drain(engine)
    assert sum(1 for _, e in events if e.finish_reason) == 4


def test_max_num_seqs_bounds_the_running_set() -> None:
    engine = _engine(max_num_seqs=3)
    for i in range(10):
        engine.add(Request(f"r{i}", 32, 8))
    engine.step()
    assert engine.num_running == 3
    assert engine.num_waiting == 7


def test_prefix_cache_hits_skip_prefill() -> None:
    hashes = tuple(range(1, 65))  # 64 full blocks = 1024 shared tokens
    cold = _engine()
    cold.add(Request("a", 1040, 1, hashes))
    first = cold.step()
    cold.add(Request("b", 1040, 1, hashes))
    second = cold.step()
    assert cold.counters.prefix_hits == 1024
    assert cold.counters.prefix_queries == 2080
    assert second.work.prefill_tokens == 16
    assert second.duration < first.duration / 3


def test_prefix_cache_can_be_disabled() -> None:
    engine = _engine(enable_prefix_caching=False)
    hashes = tuple(range(1, 65))
    engine.add(Request("a", 1040, 1, hashes))
    engine.step()
    engine.add(Request("b", 1040, 1, hashes))
    assert engine.step().work.prefill_tokens == 1040
    assert engine.counters.prefix_hits == 0


def test_growing_sequences_preempt_the_newest_and_all_finish() -> None:
    engine = _engine(num_blocks=20)  # 320 tokens
    for i in range(3):
        engine.add(Request(f"r{i}", 64, 200))
    events = _drain(engine)
    assert engine.counters.preemptions > 0
    finished = [e.request_id for _, e in events if e.finish_reason]
    assert sorted(finished) == ["r0", "r1", "r2"]
    for rid in finished:
        indexes = [e.index for _, e in events if e.request_id == rid]
        assert indexes == list(range(200))
    assert engine.kv_usage == 0


def test_chunked_prefill_splits_long_prompts() -> None:
    engine = _engine(max_num_batched_tokens=512)
    engine.add(Request("long", 2000, 2))
    works = [engine.step().work.prefill_tokens for _ in range(4)]
    assert works == [512, 512, 512, 464]


def test_same_inputs_give_identical_runs() -> None:
    def run() -> list[tuple[float, TokenEvent]]:
        engine = _engine(num_blocks=200)
        for i in range(12):
            engine.add(Request(f"r{i}", 100 + 37 * i, 20 + i, tuple(range(i % 3 + 1))))
        return _drain(engine)

    assert run() == run()


def test_abort_frees_blocks() -> None:
    engine = _engine()
    engine.add(Request("a", 500, 100))
    engine.step()
    assert engine.kv_usage > 0
    assert engine.abort("a")
    assert engine.kv_usage == 0 and not engine.has_work


def test_closed_loop_throughput_grows_with_concurrency() -> None:
    one = offline.closed_loop(_engine(), concurrency=1, input_len=512, output_len=64, requests=4)
    eight = offline.closed_loop(_engine(), concurrency=8, input_len=512, output_len=64, requests=32)
    assert eight.output_throughput > 4 * one.output_throughput
    assert eight.mean_tpot_s > one.mean_tpot_s


def test_efficiency_is_validated() -> None:
    with pytest.raises(ValueError):
        perfmodel.Efficiency(bandwidth=1.5)
