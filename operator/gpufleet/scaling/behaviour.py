"""Stabilisation windows and rate limits, as a HorizontalPodAutoscaler's behaviour. Pure.

Stabilisation, per variant: a variant grows only to the lowest replica count recommended
over the last ``scaleUpStabilizationSeconds`` and shrinks only to the highest over the
last ``scaleDownStabilizationSeconds`` — counting the recommendation in force when the
window opened (the current replicas when the history is shorter than the window), so a
change must have been recommended for the whole window.
Rate limits, per pool: at most ``scaleUpPods`` replicas added over any
``scaleUpPeriodSeconds`` (and likewise down), the budget given to the variants in the
order the caller ranks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gpufleet.scaling import model


def _in_force(history: model.History, variant: str, *, since: float, current: int) -> list[int]:
    """Recommendations for ``variant`` from ``since`` on, with the one in force then —
    ``current`` when the history does not reach back that far (a restarted operator
    changes nothing until it has watched a whole window)."""
    recs = [(r.at, r.replicas[variant]) for r in history.recommendations if variant in r.replicas]
    before = [value for at, value in recs if at <= since] or [current]
    return before[-1:] + [value for at, value in recs if at > since]


def stabilise(
    raw: Mapping[str, int],
    current: Mapping[str, int],
    history: model.History,
    *,
    now: float,
    policy: model.Policy,
) -> dict[str, int]:
    """Replicas per variant after the windows (``history`` holds earlier
    recommendations; ``raw`` is now's)."""
    out: dict[str, int] = {}
    for name, want in raw.items():
        have = current[name]
        up = want > have
        window_s = policy.up_window_s if up else policy.down_window_s
        window = [want]
        if want != have and window_s > 0:
            window += _in_force(history, name, since=now - window_s, current=have)
        out[name] = max(have, min(window)) if up else min(have, max(window))
    return out


def budget(history: model.History, *, now: float, pods: int, period_s: float, up: bool) -> int:
    """Replicas that may still be added (``up``) or removed within the period."""
    moved = sum(
        abs(e.delta) for e in history.events if now - e.at < period_s and (e.delta > 0) == up
    )
    return max(0, pods - moved)


def limit(
    wanted: Mapping[str, int],
    current: Mapping[str, int],
    ranking: Iterable[str],
    *,
    up_budget: int,
    down_budget: int,
) -> dict[str, int]:
    """``wanted`` cut to the budgets: growth goes to variants early in ``ranking``
    (best first), removal to those late in it (worst first)."""
    out = dict(current)
    ranked = list(ranking)
    for name in ranked:
        step = min(max(0, wanted[name] - current[name]), up_budget)
        up_budget -= step
        out[name] += step
    for name in reversed(ranked):
        step = min(max(0, current[name] - wanted[name]), down_budget)
        down_budget -= step
        out[name] -= step
    return out


def remember(
    history: model.History,
    *,
    now: float,
    raw: Mapping[str, int],
    events: Iterable[model.ScaleEvent],
    active: bool,
    keep_s: float,
) -> model.History:
    """The history after this decision, without what no window looks at any more (the
    newest recommendation older than ``keep_s`` stays: it is the one in force)."""
    recs = [*history.recommendations, model.Recommendation(at=now, replicas=dict(raw))]
    old = [r for r in recs if r.at <= now - keep_s]
    recs = old[-1:] + [r for r in recs if r.at > now - keep_s]
    kept_events = [e for e in [*history.events, *events] if now - e.at < keep_s]
    return model.History(
        recommendations=tuple(recs),
        events=tuple(kept_events),
        active_at=now if active else history.active_at,
    )
