"""The pipeline's side of one attempt: what the router does as the proxy reports it.

``Watch`` is the proxy's observer (``gpufleet.router.proxy.Observer``) for one attempt
on one leased endpoint. It applies the verdicts (``gpufleet.routing.verdicts``) to the
endpoint's circuit breaker and to the request's outcome, and tells the rest of the
router what it learned: the lease its progress and first token, the first-token marker
each chunk of a stream, the throughput learner and performance predictor
(``gpufleet.router.learning``) each finished answer or stream, and the class's SLO
tightening a first token that came too late (``gpufleet.router.spending``). ``close``
records the attempt's timing and releases the lease.
"""

from __future__ import annotations

from gpufleet.router import firsttoken, intake, learning, proxy, service, spending, usage
from gpufleet.router.errors import RouterError, UpstreamFailed
from gpufleet.router.outcome import Outcome
from gpufleet.router.registry import Lease
from gpufleet.routing import accounting, verdicts


class Retry(Exception):
    """Try another endpoint (nothing reached the client): ``error`` is what the client
    is told when none serves, ``reason`` the retry's label, ``status`` the upstream's
    error status when its breaker verdict waits for the request's end."""

    def __init__(self, error: RouterError, reason: str, status: int | None = None) -> None:
        super().__init__(error.message)
        self.error, self.reason, self.status = error, reason, status


class Watch:
    """Follows one attempt of ``job`` on ``lease``'s endpoint; sent when made."""

    __slots__ = ("_first_byte_s", "_job", "_marker", "_outcome", "_router", "_sent",
                 "_streaming", "lease")  # fmt: skip

    def __init__(
        self, router: service.Router, job: intake.Job, outcome: Outcome, lease: Lease
    ) -> None:
        self._router, self._job, self._outcome, self.lease = router, job, outcome, lease
        self._sent = router.clock()
        self._first_byte_s: float | None = None
        self._streaming = False
        self._marker: firsttoken.Marker | None = None

    def unanswered(self, failure: proxy.NoAnswer) -> Exception:
        """What to raise for an attempt that got no answer: ``Retry``, or the error
        itself when it may not be retried."""
        verdict = verdicts.failure(failure.kind)
        self._count(verdict.count)
        return Retry(failure.error, verdict.label) if verdict.retry else failure.error

    def answered(self, status: int, body: bytes, *, streaming: bool) -> None:
        """``Retry`` for a status to retry elsewhere; otherwise count it, and for an
        answer that is not streamed, learn from it whole."""
        router, job, slot = self._router, self._job, self.lease.slot
        self._first_byte_s = seconds = router.clock() - self._sent
        self._streaming = streaming
        retry_on = router.policy.failure_handling.retries.on_status
        verdict = verdicts.answer(status, streaming=streaming, retry_on=retry_on)
        if verdict.retry:
            error = UpstreamFailed(f"the model server answered {status}")
            raise Retry(error, verdict.label, status if verdict.count == verdicts.AT_END else None)
        self._count(verdict.count)
        router.metrics.ttft.labels(job.model, slot.endpoint.gpu, job.klass).observe(seconds)
        if streaming:
            self._marker = firsttoken.Marker(router, self.lease, sent=self._sent, then=self._late)
            return
        learning.first_token(router, self.lease, seconds=seconds, streamed=False)
        self._outcome.label = verdict.label
        if status == 200:
            learning.answer_finished(router, slot.endpoint.id, body=body, since=self._sent)
            self._outcome.usage = usage.from_body(body)

    def sending(self, status: int) -> None:
        self._outcome.status = status

    def passed(self, chunk: bytes) -> None:
        self.lease.progress(chunk.count(b"data:"))
        if self._marker is not None:
            self._marker.seen(chunk)

    def ended(self, end: proxy.StreamEnd) -> None:
        """Count how the stream ended; a finished one's usage and decode rate."""
        verdict = verdicts.stream_end(end.kind)
        self._count(verdict.count)
        if end.error is not None:
            self._outcome.label = verdict.label
            return
        job, outcome, marker = self._job, self._outcome, self._marker
        outcome.usage = used = usage.from_stream_tail(list(end.tail)) or usage.estimated(
            events=end.events, prompt_estimate=job.estimate.input_tokens,
            chat=job.parsed.kind == "chat",
        )  # fmt: skip
        if marker is not None and marker.at is not None:
            learning.stream_finished(
                self._router, self.lease, events=marker.events_after,
                tokens=used.completion_tokens, since=marker.at,
            )  # fmt: skip

    def left(self) -> None:
        self._outcome.label = "cancelled"

    def close(self) -> None:
        """The attempt is over: its timing (when it got an answer), the lease back."""
        lease, first_byte_s = self.lease, self._first_byte_s
        if first_byte_s is not None:
            marked = self._marker.at if self._marker is not None else None
            self._outcome.attempt = accounting.Attempt(
                self._sent, self._sent + first_byte_s if marked is None else marked,
                self._router.clock(), (lease.batch + lease.slot.in_flight) / 2, self._streaming,
            )  # fmt: skip
        lease.release()

    def _count(self, count: verdicts.Count) -> None:
        breaker = self.lease.slot.breaker
        if count == verdicts.FAILURE:
            breaker.on_failure(self._router.clock())
        elif count == verdicts.SUCCESS:
            breaker.on_success()

    def _late(self, at: float) -> None:
        outcome = self._outcome
        if not outcome.slo_told:
            outcome.slo_told = spending.first_token(
                self._router, self._job.klass, arrived=outcome.started, at=at
            )
