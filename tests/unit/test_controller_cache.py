"""Objects parsed once where the watch delivers them: typed or why not, status, versions."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.api.resources import ModelPool, RoutingPolicy
from gpufleet.api.routingpolicy import RoutingPolicyStatus
from gpufleet.controller import cache, runtime

SPEC = {
    "model": {"name": "m", "source": "hf://o/m", "catalogName": "llama-3.1-8b"},
    "variants": [{"name": "a", "gpu": "H100-80GB", "minReplicas": 1}],
}


def body(spec: Any = SPEC, status: Any = None, rv: str = "7", **labels: str) -> dict[str, Any]:
    meta = {"name": "p", "namespace": "ns", "uid": "u1", "generation": 3,
            "resourceVersion": rv, "labels": labels}  # fmt: skip
    out = {"apiVersion": "gpufleet.io/v1alpha1", "kind": "ModelPool", "metadata": meta}
    return out | {"spec": spec} | ({"status": status} if status is not None else {})


def parse(raw: dict[str, Any]) -> cache.Cached[ModelPool, ModelPoolStatus]:
    return cache.parse(raw, kind="ModelPool", model=ModelPool, status_model=ModelPoolStatus)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (body(), ""),
        (body(spec={"model": SPEC["model"]}), "invalid ModelPool: spec.variants: Field required"),
        (
            body(spec=SPEC | {"variants": []}),
            "invalid ModelPool: spec.variants: Tuple should have at least 1",
        ),
        # A status written by an older schema does not make the object invalid.
        (body(status={"observedGeneration": "x"}), ""),
    ],
)
def test_an_object_is_typed_or_says_which_field_is_at_fault(
    raw: dict[str, Any], problem: str
) -> None:
    found = parse(raw)
    assert found.problem.startswith(problem) and bool(found.problem) is bool(problem)
    assert (found.obj is None) is bool(problem)
    assert (found.key, found.uid, found.generation, found.version) == (("ns", "p"), "u1", 3, 7)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, ModelPoolStatus()),  # none written yet: the empty status
        ({"observedGeneration": 2}, ModelPoolStatus(observed_generation=2)),
        ({"observedGeneration": "x"}, None),  # unreadable: the next write replaces it
    ],
)
def test_the_status_is_parsed_with_the_object(status: Any, expected: Any) -> None:
    assert parse(body(status=status)).status == expected


@pytest.mark.parametrize(
    ("after", "differs"),
    [
        (body(rv="8"), False),  # a new version alone
        (body(status={"observedGeneration": 3}), False),  # its status
        (body(tier="large"), True),  # relabelled
        (body(spec=SPEC | {"variants": [{"name": "b", "gpu": "L4"}]}), True),  # spec edited
        (body(spec={"x": 1}), True),  # now invalid
    ],
)
def test_followers_look_again_only_at_what_they_read(after: dict[str, Any], differs: bool) -> None:
    before = parse(body())
    assert parse(after).follows_differently(before) is differs
    assert parse(after).follows_differently(None)


def test_the_operators_own_status_write_stands_until_the_watch_shows_a_later_one() -> None:
    kind = runtime.Kind(name="RoutingPolicy", plural="routingpolicies", owner_label="x",
                        model=RoutingPolicy, status_model=RoutingPolicyStatus,
                        reconcile=None)  # type: ignore[arg-type]  # fmt: skip
    state = runtime.KindState(kind=kind)
    state.event("ADDED", body(rv="7") | {"kind": "RoutingPolicy", "spec": {"pools": ["m"]}})
    assert state.previous_status(("ns", "p")) == RoutingPolicyStatus()
    written = RoutingPolicyStatus(observed_generation=3)
    state.remember_status(("ns", "p"), written, "9")
    assert state.previous_status(("ns", "p")) == written
    echoed = {"observedGeneration": 4}  # a later write the watch shows
    state.event("MODIFIED", body(rv="10", status=echoed) | {"spec": {"pools": ["m"]}})
    assert state.previous_status(("ns", "p")) == RoutingPolicyStatus(observed_generation=4)
