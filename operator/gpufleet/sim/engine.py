"""The continuous-batching step loop of one vLLM replica (pure, clock-free).

``Engine.step()`` does what one iteration of vLLM V1's scheduler and model runner does:

1. running sequences first, in arrival order: a decode token each, or the next chunk of
   a prompt still being prefilled (chunked prefill), within ``max_num_batched_tokens``;
   a sequence that needs a KV block when none is free preempts the most recently
   admitted running sequence (recompute: its blocks are freed and it returns to the head
   of the waiting queue, to prefill prompt and output so far again);
2. then, if nothing was preempted, waiting requests in order while there is token budget,
   a ``max_num_seqs`` slot and room in the KV cache for the chunk — the prefix cache
   supplies the leading prompt blocks it already holds, so only the rest is prefilled;
   the head of the queue blocks those behind it, as in vLLM;
3. the step's duration comes from ``PerfModel.step_seconds`` over the scheduled work;
   every sequence whose prompt completed or that decoded emits one token.

The engine holds no clock: the caller advances time by the returned duration. That makes
it deterministic and lets tests and calibration run hours of traffic in milliseconds.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from gpufleet.planning.perfmodel import PerfModel, StepWork
from gpufleet.sim.kvcache import BlockPool, Holding


@dataclasses.dataclass(frozen=True, slots=True)
class EngineConfig:
    """vLLM engine settings that shape scheduling (names as vLLM's flags)."""

    num_blocks: int
    max_model_len: int
    block_size: int = 16
    max_num_seqs: int = 256
    # vLLM V1's default for the OpenAI server on data-centre GPUs (vllm/engine/arg_utils.py).
    max_num_batched_tokens: int = 8192
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        if min(self.num_blocks, self.max_model_len, self.block_size, self.max_num_seqs) <= 0:
            raise ValueError("engine sizes must be positive")
        if self.max_num_batched_tokens <= 0:
            raise ValueError("max_num_batched_tokens must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A request as the engine sees it: token counts, prompt block hashes, output length.

    ``output_tokens`` is decided up front (``max_tokens``, or an end-of-sequence length
    drawn by the caller); ``finish_reason`` is what the last token reports.
    """

    request_id: str
    prompt_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    finish_reason: str = "length"


@dataclasses.dataclass(frozen=True, slots=True)
class TokenEvent:
    """Output token ``index`` (0-based) of a request; ``finish_reason`` set on the last."""

    request_id: str
    index: int
    finish_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did and how long it took (seconds of GPU time)."""

    duration: float
    events: tuple[TokenEvent, ...]
    work: StepWork
    preempted: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True)
class _Sequence:
    request: Request
    holding: Holding = dataclasses.field(default_factory=Holding)
    computed: int = 0
    generated: int = 0
    prefill_target: int = 0

    @property
    def prefilling(self) -> bool:
        return self.computed < self.prefill_target

    def chunk(self, budget: int) -> int:
        return min(self.prefill_target - self.computed, budget) if self.prefilling else 1


@dataclasses.dataclass(slots=True)
class Counters:
    """Monotonic totals, as vLLM's counters expose them (prefix cache in tokens)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    finished: int = 0


class Engine:
    """One replica's scheduler state. Not thread-safe; one owner drives ``step``."""

    def __init__(self, config: EngineConfig, perf: PerfModel) -> None:
        self.config = config
        self.perf = perf
        self.pool = BlockPool(
            config.num_blocks, block_size=config.block_size, caching=config.enable_prefix_caching
        )
        self.counters = Counters()
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def has_work(self) -> bool:
        return bool(self._running or self._waiting)

    @property
    def kv_usage(self) -> float:
        return self.pool.usage

    def add(self, request: Request) -> None:
        """Queue ``request``; raises ``ValueError`` if it can never fit this replica."""
        total = request.prompt_tokens + request.output_tokens
        if request.prompt_tokens <= 0 or request.output_tokens <= 0:
            raise ValueError("prompt and output must each be at least one token")
        if total > self.config.max_model_len:
            raise ValueError(f"{total} tokens exceed max_model_len {self.config.max_model_len}")
        if self._blocks_for(total) > self.config.num_blocks:
            raise ValueError(f"{total} tokens exceed the KV cache")
        seq = _Sequence(request, prefill_target=request.prompt_tokens)
        self._waiting.append(seq)

    def abort(self, request_id: str) -> bool:
        """Drop a request (client went away); True if it was still queued or running."""
        for queue in (self._running, self._waiting):
            for seq in queue:
                if seq.request.request_id == request_id:
                    queue.remove(seq)
                    self.pool.release(seq.holding)
                    return True
        return False

    def step(self) -> StepResult:
        """Schedule, cost and apply one step; a step with nothing to do takes 0 s."""
        budget = self.config.max_num_batched_tokens
        scheduled, preempted = self._schedule_running(budget)
        budget -= sum(n for _, n in scheduled)
        if not preempted:
            scheduled += self._admit_waiting(budget)
        work = _work(scheduled)
        events = tuple(e for seq, n in scheduled if (e := self._advance(seq, n)) is not None)
        return StepResult(self.perf.step_seconds(work), events, work, preempted)

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _schedule_running(self, budget: int) -> tuple[list[tuple[_Sequence, int]], tuple[str, ...]]:
        scheduled: list[tuple[_Sequence, int]] = []
        preempted: list[str] = []
        i = 0
        while i < len(self._running) and budget > 0:
            seq = self._running[i]
            n = seq.chunk(budget)
            if not self._grow(seq, n, preempted):
                break
            scheduled.append((seq, n))
            budget -= n
            i += 1
        return scheduled, tuple(preempted)

    def _grow(self, seq: _Sequence, n: int, preempted: list[str]) -> bool:
        """Give ``seq`` the blocks for ``n`` more tokens, preempting from the back."""
        need = self._blocks_for(seq.computed + n) - seq.holding.blocks
        while need > 0 and not self.pool.allocate(seq.holding, need):
            victim = self._running.pop()
            self._preempt(victim)
            preempted.append(victim.request.request_id)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: _Sequence) -> None:
        self.pool.release(seq.holding)
        seq.computed = 0
        seq.prefill_target = seq.request.prompt_tokens + seq.generated
        self.counters.preemptions += 1
        self._waiting.appendleft(seq)

    def _admit_waiting(self, budget: int) -> list[tuple[_Sequence, int]]:
        admitted: list[tuple[_Sequence, int]] = []
        while self._waiting and budget > 0 and len(self._running) < self.config.max_num_seqs:
            seq = self._waiting[0]
            n = self._reserve(seq, budget)
            if n == 0:
                break
            self._waiting.popleft()
            self._running.append(seq)
            admitted.append((seq, n))
            budget -= n
        return admitted

    def _reserve(self, seq: _Sequence, budget: int) -> int:
        """Take cached prefix blocks and blocks for the first chunk; 0 if they don't fit."""
        size = self.config.block_size
        hashes = seq.request.block_hashes
        # At least one token must be computed to produce logits, as in vLLM.
        cached = min(self.pool.cached_prefix(hashes), (seq.prefill_target - 1) // size)
        self.pool.acquire_cached(seq.holding, hashes[:cached])
        seq.computed = cached * size
        n = min(seq.prefill_target - seq.computed, budget)
        if not self.pool.allocate(seq.holding, self._blocks_for(seq.computed + n) - cached):
            self.pool.release(seq.holding)
            seq.computed = 0
            return 0
        if seq.generated == 0:
            self.counters.prompt_tokens += seq.request.prompt_tokens
        self.counters.prefix_queries += seq.request.prompt_tokens
        self.counters.prefix_hits += seq.computed
        return n

    def _advance(self, seq: _Sequence, n: int) -> TokenEvent | None:
        was_prefilling = seq.prefilling
        seq.computed += n
        full = min(seq.computed // self.config.block_size, len(seq.request.block_hashes))
        start = len(seq.holding.hashes)
        if full > start:
            self.pool.register(seq.holding, seq.request.block_hashes[start:full])
        if was_prefilling and seq.prefilling:
            return None
        seq.generated += 1
        self.counters.generation_tokens += 1
        if seq.generated < seq.request.output_tokens:
            return TokenEvent(seq.request.request_id, seq.generated - 1)
        self._running.remove(seq)
        self.pool.release(seq.holding)
        self.counters.finished += 1
        return TokenEvent(seq.request.request_id, seq.generated - 1, seq.request.finish_reason)


def _work(scheduled: list[tuple[_Sequence, int]]) -> StepWork:
    prefill = prefill_ctx = decode = decode_ctx = 0
    for seq, n in scheduled:
        if seq.prefilling:
            prefill += n
            prefill_ctx += n * seq.computed + n * (n + 1) // 2
        else:
            decode += 1
            decode_ctx += seq.computed
    return StepWork(prefill, prefill_ctx, decode, decode_ctx, len(scheduled))
