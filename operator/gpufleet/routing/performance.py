"""Learned performance curves per endpoint: predicted time to first token and time per
output token, starting from the catalog's prior and corrected online. Pure.

A ``Curve`` is two straight lines: TTFT = ``ttft_base_s`` + ``prefill_s_per_token`` x
the prefill tokens queued ahead of the first token (the prompts in flight that have no
first token yet, plus this request's own), and TPOT = ``tpot_base_s`` +
``tpot_per_seq_s`` x the running batch. vLLM's prefill is compute-bound and linear in
the prompt; its decode step reads the weights once for the batch plus each sequence's
KV and per-sequence CPU work, so it grows about linearly with the batch.

``prior`` evaluates the calibrated roofline the simulator steps by
(``gpufleet.planning.perfmodel``: the catalog's bandwidth, FLOPS and measured
efficiencies, the planner's TP split) at two points of each line, so the router and the
autoscaler start from the same figures the fleet was sized with. ``Predictor`` keeps,
per endpoint and per line, exponentially decayed sums of weighted least squares over
what it observed. A line is fitted to them plus ``PRIOR_WEIGHT`` pseudo-observations at
the prior's two points, the prior first scaled by the factor the data say it is off by:
a prior three times too slow is corrected from the first samples, and where the data
cover only a narrow range (a batch that never changes) the scaled prior keeps the slope;
data spread over the range decide the slope themselves. Samples decay with
``half_life_s``, so a change of speed is followed within a few half-lives.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from gpufleet.hardware import catalog
from gpufleet.planning import models, perfmodel, planner
from gpufleet.routing.model import Endpoint

# The two points each prior line is evaluated at: short and long prompts, one and a
# busy batch of sequences at a typical chat context.
PREFILL_POINTS = (128, 4096)
BATCH_POINTS = (1, 64)
TYPICAL_CONTEXT = 1024
# Pseudo-observations the prior counts for at each of its two points.
PRIOR_WEIGHT = 1.0
# A100-80GB with llama-3.1-8b at TP 1 (the prior above, rounded): the reference for
# endpoints of a model or GPU the catalog does not know, scaled by their throughput.
REFERENCE_MODEL = "llama-3.1-8b"
REFERENCE_GPU = "A100-80GB"


@dataclasses.dataclass(frozen=True, slots=True)
class Curve:
    ttft_base_s: float
    prefill_s_per_token: float
    tpot_base_s: float
    tpot_per_seq_s: float

    def ttft(self, prefill_tokens: float) -> float:
        """Seconds to the first token with ``prefill_tokens`` to prefill before it."""
        return self.ttft_base_s + self.prefill_s_per_token * max(0.0, prefill_tokens)

    def tpot(self, batch: float) -> float:
        """Seconds per output token while ``batch`` sequences decode together."""
        return self.tpot_base_s + self.tpot_per_seq_s * max(1.0, batch)

    def tokens_per_second(self, batch: float) -> float:
        """Generated tokens per second of the whole replica at ``batch``."""
        return max(1.0, batch) / self.tpot(batch)

    def scaled(self, factor: float) -> Curve:
        """Every time divided by ``factor`` (a replica ``factor`` times as fast)."""
        f = max(factor, 1e-9)
        return Curve(
            self.ttft_base_s / f, self.prefill_s_per_token / f, self.tpot_base_s / f,
            self.tpot_per_seq_s / f,
        )  # fmt: skip

    def __post_init__(self) -> None:
        if min(self.ttft_base_s, self.prefill_s_per_token, self.tpot_per_seq_s) < 0:
            raise ValueError("a curve's times must not be negative")
        if self.tpot_base_s <= 0 and self.tpot_per_seq_s <= 0:
            raise ValueError("a curve's time per output token must be positive")


@functools.cache  # pure, and asked for every candidate of every request
def prior(model: str, gpu: str, tensor_parallel_size: int) -> Curve | None:
    """The roofline's curve for ``model`` on ``gpu`` at that TP; None when the catalog
    does not know the model or GPU, or the planner finds the split infeasible."""
    try:
        arch, spec = models.get(model), catalog.get(gpu)
    except (models.UnknownModel, catalog.UnknownGpu):
        return None
    plan = planner.plan_variant(arch, spec, tensor_parallel_size=tensor_parallel_size)
    if plan.tensor_parallel_size is None:
        return None
    perf = perfmodel.build(arch, spec, plan)
    return Curve(
        *_line(PREFILL_POINTS, [perf.prefill_seconds(n) for n in PREFILL_POINTS]),
        *_line(BATCH_POINTS, [perf.decode_seconds(batch=b, context=TYPICAL_CONTEXT)
                              for b in BATCH_POINTS]),
    )  # fmt: skip


def prior_of(endpoint: Endpoint) -> Curve:
    """``prior`` of the endpoint's model, GPU and TP, else the reference curve scaled by
    its relative throughput (generation weight x TP: A100-80GB x 1 = 1.0)."""
    known = prior(endpoint.model, endpoint.gpu, endpoint.tensor_parallel_size)
    if known is not None:
        return known
    reference = prior(REFERENCE_MODEL, REFERENCE_GPU, 1)
    assert reference is not None  # the reference is in the catalog
    return reference.scaled(endpoint.throughput)


def _line(xs: tuple[int, int], ys: list[float]) -> tuple[float, float]:
    slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    return ys[0] - slope * xs[0], slope


@dataclasses.dataclass(slots=True)
class _Sums:
    """Decayed weighted least-squares sums of one line's observations."""

    w: float = 0.0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    xy: float = 0.0
    at: float = 0.0
    samples: int = 0

    def add(self, x: float, y: float, *, now: float, half_life_s: float) -> None:
        keep = math.pow(0.5, max(0.0, now - self.at) / half_life_s) if self.samples else 1.0
        self.w, self.x, self.y = self.w * keep + 1, self.x * keep + x, self.y * keep + y
        self.xx, self.xy = self.xx * keep + x * x, self.xy * keep + x * y
        self.at, self.samples = now, self.samples + 1

    def scale(self, prior: tuple[float, float]) -> float:
        """The factor by which the data say the prior is off (least squares of data =
        factor x prior); 1 without data."""
        a, b = prior
        explained = a * a * self.w + 2 * a * b * self.x + b * b * self.xx
        return (a * self.y + b * self.xy) / explained if self.w and explained > 0 else 1.0

    def fit(self, prior: tuple[float, float], points: tuple[int, int]) -> tuple[float, float]:
        """(intercept, slope) from the data and the prior's pseudo-observations, the
        prior first scaled to the data (its shape kept where the data cover little)."""
        w, x, y, xx, xy = self.w, self.x, self.y, self.xx, self.xy
        factor = self.scale(prior)
        for p in points:
            py = factor * (prior[0] + prior[1] * p)
            w, x, y, xx, xy = w + PRIOR_WEIGHT, x + PRIOR_WEIGHT * p, y + PRIOR_WEIGHT * py, (
                xx + PRIOR_WEIGHT * p * p), xy + PRIOR_WEIGHT * p * py  # fmt: skip
        slope = max(0.0, (w * xy - x * y) / (w * xx - x * x))
        intercept = (y - slope * x) / w
        if intercept <= 0:  # keep the line positive: through the data's mean instead
            slope, intercept = (y / w) / max(x / w, 1e-9), 0.0
        return intercept, slope


@dataclasses.dataclass(slots=True)
class Predictor:
    """Per-endpoint curves learned from observations, each line from its prior."""

    half_life_s: float = 60.0
    _ttft: dict[str, _Sums] = dataclasses.field(default_factory=dict)
    _tpot: dict[str, _Sums] = dataclasses.field(default_factory=dict)

    def observe_ttft(
        self, endpoint: str, *, prefill_tokens: float, seconds: float, now: float
    ) -> None:
        """A first token came ``seconds`` after sending, with ``prefill_tokens`` to
        prefill before it (its own prompt included)."""
        if seconds > 0 and math.isfinite(seconds):
            sums = self._ttft.setdefault(endpoint, _Sums())
            sums.add(max(0.0, prefill_tokens), seconds, now=now, half_life_s=self.half_life_s)

    def observe_tpot(self, endpoint: str, *, batch: float, seconds: float, now: float) -> None:
        """Seconds per output token seen while about ``batch`` sequences decoded."""
        if seconds > 0 and math.isfinite(seconds) and math.isfinite(batch):
            sums = self._tpot.setdefault(endpoint, _Sums())
            sums.add(max(1.0, batch), seconds, now=now, half_life_s=self.half_life_s)

    def curve(self, endpoint: str, prior: Curve) -> Curve:
        """The endpoint's curve: ``prior`` corrected by what was observed."""
        ttft = self._ttft.get(endpoint, _Sums())
        tpot = self._tpot.get(endpoint, _Sums())
        return Curve(
            *ttft.fit((prior.ttft_base_s, prior.prefill_s_per_token), PREFILL_POINTS),
            *tpot.fit((prior.tpot_base_s, prior.tpot_per_seq_s), BATCH_POINTS),
        )

    def samples(self, endpoint: str) -> tuple[int, int]:
        """(TTFT, TPOT) observations of ``endpoint`` so far."""
        return self._ttft.get(endpoint, _Sums()).samples, self._tpot.get(endpoint, _Sums()).samples

    def forget(self, endpoint: str) -> None:
        self._ttft.pop(endpoint, None)
        self._tpot.pop(endpoint, None)
