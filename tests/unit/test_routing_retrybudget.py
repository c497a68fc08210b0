"""The rolling retry budget over a literal clock."""

from __future__ import annotations

from gpufleet.routing import retrybudget


def _retries_granted(budget: retrybudget.RetryBudget, now: float, tries: int) -> int:
    return sum(budget.try_retry(now) for _ in range(tries))


def test_floor_alone_without_requests() -> None:
    budget = retrybudget.RetryBudget(ratio=0.2, floor=3, window_s=10.0)
    assert _retries_granted(budget, 0.0, 5) == 3


def test_ratio_of_recent_requests_on_top_of_the_floor() -> None:
    budget = retrybudget.RetryBudget(ratio=0.2, floor=3, window_s=10.0)
    for _ in range(50):
        budget.on_request(1.0)
    assert _retries_granted(budget, 1.0, 30) == 13  # 20 % of 50, plus 3


def test_budget_refills_once_the_window_has_passed() -> None:
    budget = retrybudget.RetryBudget(ratio=0.2, floor=3, window_s=10.0)
    assert _retries_granted(budget, 0.0, 5) == 3
    assert _retries_granted(budget, 5.0, 5) == 0  # still inside the window
    assert _retries_granted(budget, 11.5, 5) == 3  # the old retries have expired


def test_old_requests_stop_counting() -> None:
    budget = retrybudget.RetryBudget(ratio=0.5, floor=0, window_s=10.0)
    for _ in range(10):
        budget.on_request(0.0)
    assert _retries_granted(budget, 12.0, 5) == 0  # those requests are history


def test_a_process_lifetime_of_retries_never_exhausts_it() -> None:
    budget = retrybudget.RetryBudget(ratio=0.2, floor=10, window_s=10.0)
    granted = 0
    for second in range(600):  # ten minutes, 10 requests a second, 1 of them retried
        for _ in range(10):
            budget.on_request(float(second))
        granted += budget.try_retry(float(second))
    assert granted == 600
