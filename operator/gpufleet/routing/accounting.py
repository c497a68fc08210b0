"""What a served request cost and whether it met its class's SLO. Pure.

A request's GPU-seconds are its share of the replica while it ran: the attempt's
duration x TP / the mean batch it ran in (the endpoint's requests in flight when it was
sent and when it ended, itself included) — a replica running eight requests for a
second spends an eighth of a GPU-second of each of its GPUs on each. Its dollars are
those GPU-seconds x the endpoint's price per GPU-hour / 3600 (none without a price).

SLO attainment is judged as the client saw it: TTFT from the request's arrival
(admission queue included) to the first token (a stream's first chunk with output,
``gpufleet.router.firsttoken``), TPOT over the rest of a stream, end to
end to the last byte, each bound the class sets with no headroom. An answer that is not
streamed arrives whole, so its TTFT is its whole duration and no TPOT is measured.
"""

from __future__ import annotations

import dataclasses

from gpufleet.api.traffic import Slo
from gpufleet.routing import objective
from gpufleet.routing.model import Endpoint

_NO_BOUNDS = (None, None, None)


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """The attempt that answered, on the router's clock: when it was sent, its first
    token (``first_byte`` for an answer that is not streamed, which arrives whole), its
    end, and the mean batch it ran in."""

    sent: float
    first_byte: float
    ended: float
    batch: float
    streamed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Spend:
    gpu_seconds: float
    dollars: float | None
    slo_met: bool | None  # None: the class sets no SLO


def spend(
    endpoint: Endpoint,
    attempt: Attempt,
    *,
    arrived: float,
    completion_tokens: int,
    slo: Slo | None,
) -> Spend:
    """The GPU time, dollars and SLO verdict of one served request."""
    gpu_s = (attempt.ended - attempt.sent) * endpoint.tensor_parallel_size / max(1.0, attempt.batch)
    price = endpoint.cost_per_gpu_hour
    return Spend(
        gpu_s,
        None if price is None else gpu_s * price / 3600,
        met(slo, attempt, arrived=arrived, completion_tokens=completion_tokens),
    )


def ttft_missed(slo: Slo | None, *, arrived: float, first_token: float) -> bool:
    """Whether a first token at ``first_token`` already broke ``slo``'s TTFT bound, as
    ``met`` will judge it (so nothing later can mend the request's verdict)."""
    bound = slo.ttft_millis if slo is not None else None
    return bound is not None and (first_token - arrived) * 1000 > bound


def met(
    slo: Slo | None, attempt: Attempt, *, arrived: float, completion_tokens: int
) -> bool | None:
    """Whether the request met every bound of ``slo``; None when it sets none."""
    if slo is None or (slo.ttft_millis, slo.tpot_millis, slo.end_to_end_seconds) == _NO_BOUNDS:
        return None
    ttft = attempt.first_byte - arrived
    tpot = 0.0
    if attempt.streamed and completion_tokens > 1:
        tpot = (attempt.ended - attempt.first_byte) / (completion_tokens - 1)
    elapsed = attempt.ended - arrived
    on_time = slo.end_to_end_seconds is None or elapsed <= slo.end_to_end_seconds
    # ``meets`` judges the end-to-end bound on ttft alone here (no output tokens): never
    # stricter than ``on_time``, since the whole request lasts at least its ttft.
    return on_time and objective.meets(slo, ttft, tpot, 0)
