"""When a KWOK fleet counts as up: node states, the tally a watch feeds, timeouts, pacing."""

from __future__ import annotations

import pytest

from gpufleet.devcluster import errors, readiness
from gpufleet.devcluster.readiness import NodeState, RawEvent, RawNode

READY = {"conditions": [{"type": "MemoryPressure", "status": "False"},
                        {"type": "Ready", "status": "True"}]}  # fmt: skip
NOT_READY = {"conditions": [{"type": "Ready", "status": "False"}]}
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNREACHABLE_TAINT = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def node(name: str, *, status: object = None, taints: list[object] | None = None) -> RawNode:
    raw: dict[str, object] = {"metadata": {"name": name, "resourceVersion": "7"}}
    if status is not None:
        raw["status"] = status
    if taints is not None:
        raw["spec"] = {"taints": taints}
    return raw  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (node("a"), NodeState.PENDING),
        (node("a", status={}), NodeState.PENDING),
        (node("a", status=NOT_READY), NodeState.PENDING),
        (node("a", status=NOT_READY, taints=[GPU_TAINT]), NodeState.PENDING),
        (node("a", status=READY, taints=[GPU_TAINT, NOT_READY_TAINT]), NodeState.READY),
        (node("a", status=READY, taints=[UNREACHABLE_TAINT]), NodeState.READY),
        (node("a", status=READY, taints=[GPU_TAINT]), NodeState.SCHEDULABLE),
        (node("a", status=READY, taints=[]), NodeState.SCHEDULABLE),
        (node("a", status=READY), NodeState.SCHEDULABLE),
    ],
)
def test_state_of_a_node(raw: RawNode, state: NodeState) -> None:
    assert readiness.state_of(raw) == state


@pytest.mark.parametrize(
    ("count", "seconds"),
    [(1, 90.0), (15, 90.0), (250, 90.0), (500, 120.0), (1000, 180.0), (5000, 660.0)],
)
def test_ready_timeout_grows_with_the_fleet_and_never_drops_below_the_old_90s(
    count: int, seconds: float
) -> None:
    assert readiness.ready_timeout(count) == pytest.approx(seconds)


def test_deadline_counts_down_from_its_start() -> None:
    deadline = readiness.Deadline.for_fleet(1000, now=50.0)
    assert deadline.seconds == readiness.ready_timeout(1000)
    assert deadline.left(50.0) == deadline.seconds
    assert deadline.left(50.0 + deadline.seconds + 1) == -1.0


@pytest.mark.parametrize(("count", "workers"), [(0, 1), (1, 1), (5, 5), (8, 8), (5000, 8)])
def test_create_workers_are_bounded(count: int, workers: int) -> None:
    assert readiness.create_workers(count) == workers


def test_tally_counts_ready_and_schedulable_nodes_and_ignores_others() -> None:
    tally = readiness.Tally(frozenset({"a", "b", "c"}))
    tally.reset([node("a", status=READY, taints=[NOT_READY_TAINT]), node("zz", status=READY)])
    assert tally.counts() == readiness.Counts(total=3, ready=1, schedulable=0)
    tally.observe(node("a", status=READY))
    tally.observe(node("b", status=READY, taints=[GPU_TAINT]))
    assert tally.counts() == readiness.Counts(total=3, ready=2, schedulable=2)
    assert not tally.done
    tally.observe(node("c", status=READY))
    assert tally.done
    tally.forget("c")
    assert (tally.counts().schedulable, tally.done) == (2, False)
    tally.reset([])
    assert tally.counts() == readiness.Counts(total=3, ready=0, schedulable=0)


def test_tally_of_a_node_that_goes_back_to_not_ready() -> None:
    tally = readiness.Tally(frozenset({"a"}))
    tally.observe(node("a", status=READY))
    tally.observe(node("a", status=NOT_READY))
    assert tally.counts() == readiness.Counts(total=1, ready=0, schedulable=0)


def test_missing_names_late_nodes_with_their_state_up_to_a_limit() -> None:
    tally = readiness.Tally(frozenset(f"n{i:02d}" for i in range(14)))
    tally.observe(node("n00", status=READY))
    tally.observe(node("n01", status=READY, taints=[NOT_READY_TAINT]))
    assert tally.missing(limit=3) == "n01 (ready), n02 (pending), n03 (pending) and 10 more"
    assert tally.missing(limit=20).count("(pending)") == 12


def test_counts_line() -> None:
    assert readiness.Counts(5000, 4000, 3500).line() == "4000/5000 Ready, 3500/5000 schedulable"


@pytest.mark.parametrize(
    ("event", "since", "schedulable"),
    [
        ({"type": "ADDED", "object": node("a", status=READY)}, "7", 2),
        ({"type": "MODIFIED", "object": node("a", status=READY)}, "7", 2),
        ({"type": "MODIFIED", "object": node("a", status=NOT_READY)}, "7", 1),
        ({"type": "DELETED", "object": node("b", status=READY)}, "7", 0),
        ({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}, "9", 1),
    ],
)
def test_apply_an_event(event: RawEvent, since: str, schedulable: int) -> None:
    tally = readiness.Tally(frozenset({"a", "b"}))
    tally.observe(node("b", status=READY))
    assert readiness.apply(tally, event, "1") == since
    assert tally.counts().schedulable == schedulable


def test_apply_an_expired_watch_asks_for_a_new_list() -> None:
    gone: RawEvent = {"type": "ERROR", "object": {"code": 410, "message": "too old"}}  # type: ignore[typeddict-unknown-key]
    with pytest.raises(readiness.Expired):
        readiness.apply(readiness.Tally(frozenset()), gone, "1")


def test_apply_another_error_fails_naming_it() -> None:
    denied: RawEvent = {"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}  # type: ignore[typeddict-unknown-key]
    with pytest.raises(errors.StartFailed, match="watching nodes: forbidden"):
        readiness.apply(readiness.Tally(frozenset()), denied, "1")


@pytest.mark.parametrize(
    ("last", "times", "said"),
    [
        (None, [0.0, 1.0, 4.9, 5.0, 9.9, 10.5], [True, False, False, True, False, True]),
        (0.0, [0.0, 4.0, 5.0, 5.1], [False, False, True, False]),
    ],
)
def test_pacer_says_at_most_one_line_per_interval(
    last: float | None, times: list[float], said: list[bool]
) -> None:
    pacer = readiness.Pacer(5.0, last=last)
    assert [pacer.due(t) for t in times] == said
