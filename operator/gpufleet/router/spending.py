"""Accounting of served requests by class x GPU generation: tokens, GPU-seconds,
dollars and SLO attainment, into ``/metrics`` and ``/stats`` (the figures come from
``gpufleet.routing.accounting``); each SLO verdict also steers its class's tightening
(``gpufleet.routing.calibration.Attainment``)."""

from __future__ import annotations

from gpufleet.router import intake, service
from gpufleet.router.outcome import Outcome
from gpufleet.routing import accounting


def first_token(router: service.Router, klass: str, *, arrived: float, at: float) -> bool:
    """A stream's first token came at ``at`` (router clock) for a request that arrived
    at ``arrived``. When that already breaks the class's TTFT bound, the miss steers
    the class's tightening now rather than when the stream ends (nothing later can mend
    it); True then, and ``record`` does not count the request again."""
    found = router.policy.request_class(klass)
    slo = found.slo if found is not None else None
    if not accounting.ttft_missed(slo, arrived=arrived, first_token=at):
        return False
    router.attainment.observe(klass, met=False)
    return True


def record(router: service.Router, job: intake.Job, outcome: Outcome) -> None:
    """Count one request that ended in success with an answer and its usage."""
    decision, attempt, used = outcome.decision, outcome.attempt, outcome.usage
    if decision is None or attempt is None or used is None or outcome.label != "success":
        return
    klass = router.policy.request_class(job.klass)
    spent = accounting.spend(
        decision.endpoint, attempt, arrived=outcome.started,
        completion_tokens=used.completion_tokens, slo=klass.slo if klass else None,
    )  # fmt: skip
    gpu, metrics = decision.endpoint.gpu, router.metrics
    metrics.class_tokens.labels(job.klass, gpu, "prompt").inc(used.prompt_tokens)
    metrics.class_tokens.labels(job.klass, gpu, "completion").inc(used.completion_tokens)
    metrics.gpu_seconds.labels(job.klass, gpu).inc(spent.gpu_seconds)
    if spent.dollars is not None:
        metrics.dollars.labels(job.klass, gpu).inc(spent.dollars)
    if spent.slo_met is not None:
        metrics.slo_requests.labels(job.klass, gpu, str(spent.slo_met).lower()).inc()
        if not outcome.slo_told:
            router.attainment.observe(job.klass, met=spent.slo_met)
    router.stats.spent(job.klass, gpu, used, spent)
