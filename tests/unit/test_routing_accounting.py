"""A served request's GPU-seconds, dollars and SLO verdict (table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.traffic import Slo
from gpufleet.routing import accounting
from gpufleet.routing.model import Endpoint

H100X2 = Endpoint("http://h", "m", "H100-80GB", 2, 2.0, cost_per_gpu_hour=3.6)


def test_gpu_seconds_are_the_share_of_the_replica() -> None:
    # 4 s on a TP-2 replica running 8 requests: 4 x 2 / 8 = 1 GPU-second, $0.001 at $3.6/h.
    attempt = accounting.Attempt(sent=0.0, first_byte=0.5, ended=4.0, batch=8, streamed=True)
    spent = accounting.spend(H100X2, attempt, arrived=0.0, completion_tokens=100, slo=None)
    assert spent.gpu_seconds == pytest.approx(1.0)
    assert spent.dollars == pytest.approx(0.001)
    assert spent.slo_met is None
    unpriced = Endpoint("http://u", "m", "A100-40GB", 1, 1.0)
    assert (
        accounting.spend(unpriced, attempt, arrived=0, completion_tokens=1, slo=None).dollars
        is None
    )


@pytest.mark.parametrize(
    ("slo", "arrived", "streamed", "met"),
    [
        (Slo(), 0.0, True, None),  # no bound set
        (Slo(ttft_millis=1000), 0.0, True, True),  # first byte at 0.9 s
        (Slo(ttft_millis=1000), -0.2, True, False),  # queued 0.2 s before: 1.1 s
        (Slo(tpot_millis=30), 0.0, True, True),  # (3.9 - 0.9) / 100 = 30 ms
        (Slo(tpot_millis=29), 0.0, True, False),
        (Slo(tpot_millis=1), 0.0, False, True),  # not streamed: no TPOT measured
        (Slo(ttft_millis=1000), 0.0, False, True),
        (Slo(end_to_end_seconds=3), 0.0, True, False),
    ],
)
def test_slo_is_judged_as_the_client_saw_it(
    slo: Slo, arrived: float, streamed: bool, met: bool | None
) -> None:
    attempt = accounting.Attempt(0.1, 0.9, 3.9, 1, streamed)
    assert accounting.met(slo, attempt, arrived=arrived, completion_tokens=101) is met
    # A stream's TTFT miss, told at its first token, agrees with the verdict at its end.
    early = accounting.ttft_missed(slo, arrived=arrived, first_token=attempt.first_byte)
    assert not early or met is False


@pytest.mark.parametrize(
    ("slo", "first_token", "missed"),
    [(None, 9.0, False), (Slo(), 9.0, False), (Slo(ttft_millis=1000), 1.0, False),
     (Slo(ttft_millis=1000), 1.001, True), (Slo(tpot_millis=1), 9.0, False)],
)  # fmt: skip
def test_ttft_missed_at_the_first_token(slo: Slo | None, first_token: float, missed: bool) -> None:
    assert accounting.ttft_missed(slo, arrived=0.0, first_token=first_token) is missed
