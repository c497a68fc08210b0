"""A RoutingPolicy's status from literal router reports and Deployment observations."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec, RoutingPolicyStatus
from gpufleet.controller import observe
from gpufleet.controller.routingpolicy import policystatus

T0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
SPEC = RoutingPolicySpec.model_validate({"pools": ["a", "b"], "router": {"replicas": 2}})
SIDECAR = RoutingPolicySpec.model_validate({"pools": ["a"], "router": {"mode": "sidecar"}})


def stats(generation: int | None = 7, *, error: str = "", ready: int = 2, **over: Any) -> Any:
    return {
        "strategy": "cost",  # and much more the operator does not read
        "config": {"policyGeneration": generation, "error": error, "appliedAt": 1.0},
        "backends": [
            {"pool": "a", "gpu": "H100-80GB", "endpoints": 2, "readyEndpoints": ready},
            {"pool": "b", "gpu": "A100-80GB", "endpoints": 1, "readyEndpoints": 0},
        ],
        "effectiveWeights": {"H100-80GB": 1.93, "A100-80GB": 1.0},
    } | over


def report(pod: str, *args: Any, **kwargs: Any) -> policystatus.RouterReport:
    parsed = policystatus.parse_report(pod, stats(*args, **kwargs))
    assert isinstance(parsed, policystatus.RouterReport), parsed
    return parsed


def deployment(*, ready: int = 2, updated: int = 2, generation: int = 1, seen: int = 1) -> Any:
    return observe.ObservedChild(
        kind="Deployment", namespace="ns", name="p-router", uid="u", owner="p", spec_hash="h",
        body={}, replicas=2, ready_replicas=ready, updated_replicas=updated,
        generation=generation, observed_generation=seen,
    )  # fmt: skip


def compute(
    reports: list[Any],
    *,
    spec: RoutingPolicySpec | None = SPEC,
    live: Any = "rolled-out",
    problems: tuple[str, ...] = (),
    previous: RoutingPolicyStatus | None = None,
    now: datetime.datetime = T0,
    pools: tuple[str, ...] = ("a", "b"),
) -> RoutingPolicyStatus:
    return policystatus.compute(
        spec,
        generation=7,
        pools=pools,
        deployment=deployment() if live == "rolled-out" else live,
        reports=reports,
        problems=problems,
        previous=previous,
        now=now,
    )


def conditions(s: RoutingPolicyStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in s.conditions}


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        ([], "(top level)"),
        ({"config": {"policyGeneration": "seven"}}, "config.policyGeneration"),
        ({"config": {"policyGeneration": -1}}, "config.policyGeneration"),
        ({"backends": [{"pool": "a", "gpu": "H100-80GB", "endpoints": 1}]}, "readyEndpoints"),
        ({"backends": {"pool": "a"}}, "backends"),
        ({"effectiveWeights": {"H100-80GB": float("nan")}}, "effectiveWeights.H100-80GB"),
    ],
)
def test_malformed_stats_give_a_reason_naming_pod_and_key(raw: object, fault: str) -> None:
    reason = policystatus.parse_report("r-1", raw)
    assert isinstance(reason, str)
    assert reason.startswith("router r-1: GET /stats: ") and fault in reason


def test_report_reads_config_backends_and_weights() -> None:
    r = report("r-1", 7, error="Secret acme-key not found")
    assert (r.pod, r.policy_generation, r.error) == ("r-1", 7, "Secret acme-key not found")
    assert [(b.pool, b.gpu, b.endpoints, b.ready_endpoints) for b in r.backends] == [
        ("a", "H100-80GB", 2, 2), ("b", "A100-80GB", 1, 0),
    ]  # fmt: skip
    assert r.effective_weights == {"H100-80GB": 1.93, "A100-80GB": 1.0}
    bare = policystatus.parse_report("old", {"strategy": "cost"})
    assert isinstance(bare, policystatus.RouterReport) and bare.policy_generation is None


def test_ready_when_rolled_out_applied_and_routable() -> None:
    s = compute([report("r-2", ready=1), report("r-1", ready=2)])
    assert conditions(s) == {
        "Ready": ("True", "Routing"),
        "Progressing": ("False", "Complete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (s.observed_generation, s.routers, s.applied_generation) == (7, 2, 7)
    assert [(b.pool, b.endpoints, b.ready_endpoints) for b in s.backends] == [
        ("a", 2, 2), ("b", 1, 0),
    ]  # fmt: skip
    assert s.ready_endpoints == 2 and s.pools == ("a", "b")
    assert all(c.observed_generation == 7 for c in s.conditions)


def test_weights_are_the_first_routers_by_pod_name() -> None:
    late = report("r-2", effectiveWeights={"H100-80GB": 2.5})
    s = compute([late, report("r-1")])
    assert s.effective_weights == {"H100-80GB": 1.93, "A100-80GB": 1.0}


ROLLING = (("False", "RoutersNotReady"), ("True", "RollingOut"))


@pytest.mark.parametrize(
    ("live", "reports", "ready", "progressing"),
    [
        (None, [], *ROLLING),
        (deployment(updated=1), [], *ROLLING),
        (deployment(generation=2, seen=1), [], *ROLLING),  # not yet seen by its controller
        (deployment(ready=1), [], *ROLLING),
        (deployment(), ["router r-1: GET /stats failed: timeout"],
         ("False", "RoutersUnreachable"), ("False", "Complete")),
        (deployment(), [6, 7], ("False", "ConfigNotApplied"), ("True", "ApplyingConfig")),
        (deployment(), [None, 7], ("False", "ConfigNotApplied"), ("True", "ApplyingConfig")),
    ],
)  # fmt: skip
def test_not_ready_while_rolling_out_or_applying(
    live: Any, reports: list[Any], ready: tuple[str, str], progressing: tuple[str, str]
) -> None:
    given = [r if isinstance(r, str) else report(f"r-{i}", r) for i, r in enumerate(reports)]
    s = compute(given, live=live)
    assert conditions(s)["Ready"] == ready
    assert conditions(s)["Progressing"] == progressing
    assert conditions(s)["Degraded"] == ("False", "AsExpected")


def test_applied_generation_is_the_lowest_and_none_if_any_router_has_none() -> None:
    assert compute([report("a", 6), report("b", 7)]).applied_generation == 6
    assert compute([report("a", None), report("b", 7)]).applied_generation is None
    assert compute([]).applied_generation is None


def test_unreachable_message_says_why() -> None:
    s = compute(["router r-1: GET /stats answered 503"])
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert ready.message == "no router answered: router r-1: GET /stats answered 503"
    assert s.routers == 0


def test_no_ready_endpoint_is_not_ready() -> None:
    s = compute([report("r-1", ready=0)])
    assert conditions(s)["Ready"] == ("False", "NoReadyEndpoints")
    none = compute([report("r-1", ready=0, backends=[])], pools=())
    ready = next(c for c in none.conditions if c.type == "Ready")
    assert ready.message == "poolSelector matches no ModelPool"


def test_a_router_config_error_degrades_and_stops_progress() -> None:
    s = compute([report("r-1", 6, error="Secret acme-key not found"), report("r-2", 7)])
    assert conditions(s) == {
        "Ready": ("False", "ConfigNotApplied"),
        "Progressing": ("False", "ConfigRejected"),
        "Degraded": ("True", "ConfigError"),
    }
    degraded = next(c for c in s.conditions if c.type == "Degraded")
    assert "r-1: Secret acme-key not found" in degraded.message


def test_problems_block_every_condition_but_routers_are_still_counted() -> None:
    s = compute([report("r-1", 6)], problems=("metadata.name: too long",))
    assert conditions(s) == {
        "Ready": ("False", "InvalidSpec"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
    }
    assert all(c.message == "metadata.name: too long" for c in s.conditions)
    assert (s.routers, s.applied_generation) == (1, 6)
    unreadable = compute([], spec=None, problems=("invalid RoutingPolicy: spec.pools: x",))
    assert conditions(unreadable)["Degraded"] == ("True", "InvalidSpec")


def test_sidecar_without_routers_is_not_ready_but_not_degraded_or_progressing() -> None:
    s = compute([], spec=SIDECAR, live=None, pools=("a",))
    assert conditions(s) == {
        "Ready": ("False", "NoRouters"),
        "Progressing": ("False", "Complete"),
        "Degraded": ("False", "AsExpected"),
    }


def test_sidecar_routers_that_apply_the_generation_make_it_ready() -> None:
    s = compute([report("app-1")], spec=SIDECAR, live=None, pools=("a",))
    assert conditions(s)["Ready"] == ("True", "Routing")
    behind = compute([report("app-1", 6)], spec=SIDECAR, live=None, pools=("a",))
    assert conditions(behind)["Progressing"] == ("True", "ApplyingConfig")


def test_transition_time_moves_only_when_a_status_flips() -> None:
    first = compute([report("r-1", 6)], now=T0)
    again = compute([report("r-1", 6)], previous=first, now=T1)
    assert again == first  # nothing observable changed: nothing to write
    flipped = compute([report("r-1", 7)], previous=first, now=T1)
    times = {c.type: c.last_transition_time for c in flipped.conditions}
    assert times == {
        "Ready": "2026-12-01T12:05:00Z",  # False -> True
        "Progressing": "2026-12-01T12:05:00Z",  # True -> False
        "Degraded": "2026-12-01T12:00:00Z",  # False all along
    }
    events = policystatus.transitions(first, flipped)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Routing"), ("Normal", "Complete")]
