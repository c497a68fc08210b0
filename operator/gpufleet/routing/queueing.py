"""What a new request finds queued on an endpoint, in the terms of its performance
curve (``gpufleet.routing.performance``): the prefill ahead of its first token, the
batch it decodes in, how long it waits for a place in that batch, and how much of the
engine's time the prompts sent after it will take. Pure, apart from ``Rate``'s state.

The figures come from the router's own counts of the requests it has in flight there
(``Load``), so an endpoint's predicted latency rises with the load the router itself
put on it, between two Prometheus reads as much as after them:

- **prefill ahead**: the prompt tokens of the requests without a first token yet, plus
  its own. vLLM prefills in arrival order, so all of it comes before its first token.
- **waiting for a place**: vLLM admits a request when a batch slot (``max_num_seqs``;
  the router's per-endpoint limit stands in for it) and KV-cache blocks for it are
  free. The KV in use is the larger of vLLM's usage (when Prometheus is fresh) and the
  router's count (prompt + expected output of every request in flight: what they
  will hold at their longest). When the request does not fit, it waits until the
  running sequences have freed enough: the share of the work in flight that must finish
  (the missing KV over the KV in use, the missing slots over the running batch, or —
  from Prometheus, with the KV full — the engine's waiting requests and this one over
  its running batch, whichever is largest) x the time the endpoint needs to finish all
  of it (its pending work at the running batch's rate).
- **batch**: the running sequences and this one; where the KV cache holds only part
  of the requests in flight, only that part runs.
- **prefill share**: vLLM's chunked prefill runs the prompts that arrive later in the
  same steps as this request's decode, so each of its tokens also waits for their
  prefill. The share of time that takes is the prompt tokens per second the router sent
  there lately (``Rate``, a ``RATE_WINDOW_S`` exponential window) x the curve's seconds
  per prefill token, at most ``MAX_PREFILL_SHARE``; the time per output token is the
  curve's at the batch / (1 - share).
"""

from __future__ import annotations

import dataclasses
import math

from gpufleet.routing.model import Candidate, RoutingRequest
from gpufleet.routing.performance import Curve

RATE_WINDOW_S = 10.0
MAX_PREFILL_SHARE = 0.9
# vLLM's KV-cache usage at which its waiting requests are waiting for KV blocks rather
# than for prefill budget.
KV_FULL = 0.9


@dataclasses.dataclass(slots=True)
class Rate:
    """An amount per second over an exponential window of ``window_s``: a steady flow
    of r per second reads r."""

    window_s: float = RATE_WINDOW_S
    _level: float = 0.0
    _at: float = 0.0

    def add(self, amount: float, now: float) -> None:
        self._level = self._decayed(now) + amount
        self._at = max(self._at, now)

    def per_second(self, now: float) -> float:
        return self._decayed(now) / self.window_s

    def _decayed(self, now: float) -> float:
        return self._level * math.exp(-max(0.0, now - self._at) / self.window_s)


@dataclasses.dataclass(frozen=True, slots=True)
class Queue:
    """What a new request finds on an endpoint (see the module docstring)."""

    prefill_tokens: float
    batch: float
    wait_s: float
    prefill_share: float

    def ttft(self, curve: Curve) -> float:
        """Seconds to its first token: the wait, then the prefill ahead — at least one
        step of the batch it joins, which produces that token."""
        return self.wait_s + max(curve.ttft(self.prefill_tokens), curve.tpot(self.batch))

    def tpot(self, curve: Curve) -> float:
        """Seconds per output token: the batch's step, stretched by later prefill."""
        return curve.tpot(self.batch) / (1.0 - self.prefill_share)


def queue(request: RoutingRequest, candidate: Candidate, curve: Curve) -> Queue:
    """What ``request`` would find on ``candidate``, whose curve is ``curve``."""
    load, endpoint = candidate.load, candidate.endpoint
    in_flight = max(0, load.in_flight)
    slots = max(1, endpoint.max_in_flight)
    kv_used = kv_in_use(candidate)
    capacity = endpoint.kv_capacity_tokens
    running = float(min(in_flight, slots))
    if capacity and kv_used > capacity:
        running = min(running, in_flight * capacity / kv_used)
    share = min(MAX_PREFILL_SHARE, max(0.0, load.prefill_per_s * curve.prefill_s_per_token))
    return Queue(
        prefill_tokens=load.prefill_tokens + request.input_tokens,
        batch=min(running + 1, float(slots)),
        wait_s=_blocked(request, candidate, kv_used, running) * _drain_s(candidate, curve, running),
        prefill_share=share,
    )


def kv_in_use(candidate: Candidate) -> float:
    """KV-cache tokens in use: the larger of vLLM's usage (fresh Prometheus) and the
    router's count of its requests in flight there."""
    signals, capacity = candidate.load.signals, candidate.endpoint.kv_capacity_tokens
    engine = signals.kv_usage * capacity if signals and signals.kv_usage is not None else 0.0
    return max(candidate.load.kv_tokens, engine)


def _blocked(
    request: RoutingRequest, candidate: Candidate, kv_used: float, running: float
) -> float:
    """The share of the work in flight that must finish before ``request`` is admitted."""
    endpoint, load = candidate.endpoint, candidate.load
    capacity = endpoint.kv_capacity_tokens
    missing_kv = kv_used + request.input_tokens + request.output_tokens - capacity
    shares = [0.0]
    if capacity and missing_kv > 0:
        shares.append(missing_kv / max(kv_used, 1.0))
    missing_slots = load.in_flight + 1 - endpoint.max_in_flight
    if missing_slots > 0:
        shares.append(missing_slots / max(running, 1.0))
    signals = load.signals
    if signals and signals.waiting and (signals.kv_usage or 0.0) >= KV_FULL:
        shares.append((signals.waiting + 1) / max(signals.running or running, 1.0))
    return max(shares)


def _drain_s(candidate: Candidate, curve: Curve, running: float) -> float:
    """Seconds the endpoint needs to serve all its pending work at the running batch."""
    return candidate.load.pending_tokens / curve.tokens_per_second(running)
