"""What the ``cost`` strategy optimises (``objective``), from each candidate's predicted
latency and price. Pure.

``predict`` evaluates an endpoint's learned curve (``gpufleet.routing.performance``)
for one request at what it would find queued there (``gpufleet.routing.queueing``):
TTFT = the wait for a place in the batch + the prefill ahead of it and its own prompt,
TPOT at the batch it would join, stretched by the prefill of the prompts sent after it,
and what a token of it would cost there: price per GPU-hour x TP x that TPOT / that
batch — the request's share of the replica, as the router's accounting charges it
(``gpufleet.routing.accounting``). A replica already running a batch is cheaper per
token than an idle one of the same generation, so ``cost`` packs requests onto busy
replicas up to their SLO and leaves the rest idle for the autoscaler to remove. A
candidate meets its class's SLO when each bound the class sets — TTFT, TPOT and end to
end (TTFT + output tokens x TPOT) — holds for the predictions times the endpoint's
``calibration.Margin``: the predictions are means, the SLOs bound the 90th percentile,
and the margin is how far this endpoint's recent requests ran past their predictions
at that percentile (``calibration.DEFAULT_FACTOR``, a fifth of the bound to spare,
until it has learned one).
It also spares the requests already running there (``spares``): vLLM prefills a new
prompt in the steps that decode theirs, so each of their tokens waits for it, and a
short answer on a slow generation misses its TPOT bound when a long prompt lands
beside it; the candidate meets the SLO only when every resident with a TPOT bound
keeps it, counting the prompts sent there since it was placed.

- ``cost``: among the candidates predicted to meet the SLO, the lowest price per token;
  candidates within ``PRICE_BAND`` of it are equally cheap and the scorers' sum decides
  between them (so load, KV and affinity still spread and place work within a
  generation). Cost only where there is slack: the band widens as the fleet fills
  (``price_band``), so from ``FULL`` on every candidate that meets the SLO is in it and
  the scorers decide, as ``balanced`` does; when none meets it, the fleet is full for
  this request and the scorers' sum decides (``balanced``'s choice: packing onto the
  cheapest generation or chasing one latency prediction is what lost SLOs near
  saturation). How full is read from the learned curves, not from slot counts: each
  candidate's ``pressure`` is the share of its headroom under the class's SLO — bound
  minus its prediction when idle — that the queue it has now takes up, and the fill is
  the mean over the candidates that could meet the SLO at all, each counted at most
  as full (none, or a class without an SLO: no pressure, the cheapest wins).
- ``latency``: the least predicted TTFT + output tokens x TPOT, the scorers breaking
  ties.
- ``balanced``: the scorers' weighted sum alone, where the ``cost`` scorer is the
  cheapest price per token over this candidate's.

Unpriced endpoints: when no candidate has a price, GPU-seconds per token rank them;
when some have one, an unpriced endpoint is dearer than any priced one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from gpufleet.api.traffic import Slo
from gpufleet.routing import calibration, performance, queueing
from gpufleet.routing.model import Candidate, Load, RoutingRequest

Objective = Literal["cost", "latency", "balanced"]
PRICE_BAND = 0.05
# The candidates' mean pressure from which ``cost`` starts to give up price for balance,
# and at which it has given up all of it.
SLACK_ENDS, FULL = 0.5, 0.85


@dataclasses.dataclass(frozen=True, slots=True)
class Prediction:
    """One candidate's predicted latency for a request and its price per token.

    ``dollars_per_million`` is None for an endpoint without a price;
    ``gpu_seconds_per_token`` is this request's share of the GPU time of each of its
    tokens at the batch it would join."""

    ttft_s: float
    tpot_s: float
    gpu_seconds_per_token: float
    dollars_per_million: float | None
    meets_slo: bool

    def latency_s(self, output_tokens: int) -> float:
        return self.ttft_s + output_tokens * self.tpot_s


def predict(
    request: RoutingRequest,
    candidate: Candidate,
    curve: performance.Curve,
    slo: Slo | None,
    margin: calibration.Margin = calibration.DEFAULT,
) -> Prediction:
    endpoint = candidate.endpoint
    found = queueing.queue(request, candidate, curve)
    ttft, tpot = found.ttft(curve), found.tpot(curve)
    gpu_s = endpoint.tensor_parallel_size * tpot / max(1.0, found.batch)
    price = endpoint.cost_per_gpu_hour
    dollars = None if price is None else price / 3600 * gpu_s * 1e6
    fits = meets(slo, ttft * margin.ttft, tpot * margin.tpot, request.output_tokens)
    stall_s = request.input_tokens * curve.prefill_s_per_token * margin.ttft
    fits = fits and spares(candidate.load, stall_s, tpot * margin.tpot, curve, margin)
    return Prediction(ttft, tpot, gpu_s, dollars, fits)


def pressure(
    now: Prediction,
    idle: Prediction,
    slo: Slo | None,
    margin: calibration.Margin,
    output_tokens: int,
) -> float | None:
    """The share of a candidate's headroom under ``slo`` that its queue takes: for each
    bound, (prediction now - prediction idle) / (bound - prediction idle), margins
    applied; the largest. None when no bound is set or the candidate misses one even
    idle (it has no headroom to fill)."""
    if slo is None:
        return None
    pairs = (
        (slo.ttft_millis, now.ttft_s * margin.ttft * 1000, idle.ttft_s * margin.ttft * 1000),
        (slo.tpot_millis, now.tpot_s * margin.tpot * 1000, idle.tpot_s * margin.tpot * 1000),
        (slo.end_to_end_seconds,
         now.ttft_s * margin.ttft + output_tokens * now.tpot_s * margin.tpot,
         idle.ttft_s * margin.ttft + output_tokens * idle.tpot_s * margin.tpot),
    )  # fmt: skip
    shares = [
        (value - floor) / (bound - floor) for bound, value, floor in pairs if bound is not None
    ]
    if not shares or any(bound is not None and floor >= bound for bound, _, floor in pairs):
        return None
    return max(0.0, *shares)


def fill(pressures: Sequence[float | None]) -> float:
    """The candidates' mean pressure, over those that have one (0 when none has), each
    counted at most as full: one endpoint far past its bound beside idle ones is one
    full endpoint, not a full fleet."""
    known = [min(1.0, p) for p in pressures if p is not None]
    return sum(known) / len(known) if known else 0.0


def spares(
    load: Load,
    stall_s: float,
    tpot_s: float,
    curve: performance.Curve,
    margin: calibration.Margin,
) -> bool:
    """Whether every resident still meets its TPOT bound when a new prompt's prefill
    (``stall_s``) runs in the steps its tokens wait for, at the batch's ``tpot_s``: its
    output tokens x (bound - ``tpot_s``) is the time its tokens can wait in all, and
    the prompts sent since it was placed (``Load.prompt_tokens_sent`` - its
    ``Resident.sent_before``) took their share of that already. An answer of one token
    has no time per output token."""
    for r in load.residents:
        if r.output_tokens < 2:
            continue
        since = load.prompt_tokens_sent - r.sent_before
        spent = since * curve.prefill_s_per_token * margin.ttft
        if stall_s + spent > r.output_tokens * (r.tpot_bound_s - tpot_s):
            return False
    return True


def meets(slo: Slo | None, ttft_s: float, tpot_s: float, output_tokens: int) -> bool:
    """Whether every bound of ``slo`` holds (no SLO: yes); any margin is the caller's,
    in the figures it passes."""
    if slo is None:
        return True
    bounds = (
        (slo.ttft_millis, ttft_s * 1000),
        (slo.tpot_millis, tpot_s * 1000),
        (slo.end_to_end_seconds, ttft_s + output_tokens * tpot_s),
    )
    return all(bound is None or value <= bound for bound, value in bounds)


def unit_costs(predictions: Sequence[Prediction]) -> list[float]:
    """What a token costs on each candidate, comparable across them: dollars where any
    is priced (inf for the unpriced), else GPU-seconds."""
    if any(p.dollars_per_million is not None for p in predictions):
        return [math.inf if p.dollars_per_million is None else p.dollars_per_million
                for p in predictions]  # fmt: skip
    return [p.gpu_seconds_per_token for p in predictions]


def price_scores(predictions: Sequence[Prediction]) -> list[float]:
    """The ``cost`` scorer: cheapest unit cost / this one's (0 for an unpriced one)."""
    costs = unit_costs(predictions)
    best = min(costs, default=math.inf)
    return [best / c if math.isfinite(c) and c > 0 else 0.0 for c in costs]


def price_band(fill: float) -> float:
    """How much dearer than the cheapest a candidate may be and still count as cheap,
    as a factor, when the candidates' mean utilisation is ``fill``: 1 + ``PRICE_BAND``
    up to ``SLACK_ENDS``, then wider until infinite at ``FULL``."""
    if fill >= FULL:
        return math.inf
    given_up = max(0.0, fill - SLACK_ENDS) / (FULL - SLACK_ENDS)
    return (1 + PRICE_BAND) / (1 - given_up)


def choose(
    objective: Literal["cost", "latency"],
    request: RoutingRequest,
    predictions: Sequence[Prediction],
    scores: Sequence[float],
    *,
    fill: float = 0.0,
) -> int:
    """The index of the candidate ``objective`` picks; ``scores`` (the scorers' sums)
    break ties; ``fill`` is the candidates' mean utilisation (``cost`` only)."""
    every = range(len(predictions))
    if objective == "cost":
        meeting = [i for i in every if predictions[i].meets_slo]
        if not meeting:
            return max(every, key=lambda i: (scores[i], -i))
        costs = unit_costs(predictions)
        cheapest = min(costs[i] for i in meeting)
        band = price_band(fill)
        cheap = [i for i in meeting if math.isinf(band) or costs[i] <= cheapest * band]
        return max(cheap, key=lambda i: (scores[i], -i))
    return min(every, key=lambda i: (predictions[i].latency_s(request.output_tokens),
                                     -scores[i], i))  # fmt: skip


def curves_for(
    candidates: Sequence[Candidate], curves: Mapping[str, performance.Curve]
) -> list[performance.Curve]:
    """Each candidate's curve: the one given, else its prior (or the reference)."""
    return [curves.get(c.id) or performance.prior_of(c.endpoint) for c in candidates]
