"""The route plan: what to do with one request, decided from a read-only snapshot of
the router's state. Pure.

``plan`` asks the picker (``gpufleet.routing.picker``) for an endpoint of the requested
model. When that model has no capacity, or every spillover tier is saturated, it asks
again for the policy's fallback model; when every tier is saturated and no fallback
took the request, it picks over all tiers (a tier's threshold is a preference, not a
limit). The plan it returns says what the router does next:

- ``Send``: forward to ``decision.endpoint`` (an endpoint of the fallback model when its
  model differs from the request's; ``decision.tier`` the spillover tier that serves);
- ``Wait``: every endpoint of the model is saturated (queued for their pool), or no
  endpoint of the model is routable while a routed pool serves it (held for that pool,
  which scales from zero); the router waits in its admission queue, then plans again;
- ``Refuse``: too large for every endpoint's KV cache (400), or no capacity (503).

A plan names one endpoint, not a ranking: a retry plans again with the endpoints tried
in ``Snapshot.exclude``, because loads have moved by then; so does a request woken in
the queue, which asks for no fallback (it waits for its own model's pool).

Every pick takes a turn (ties rotate by it): a plan's ``turn`` is the counter after its
last pick, for the router to keep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.routing import affinity, calibration, performance, picker, waitqueue
from gpufleet.routing.model import Candidate, RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The router's state as one plan sees it: the policy, every routable endpoint with
    its load (``candidates``), the tie-breaking ``turn`` so far, the prefix-affinity
    ``ring`` and the request's session endpoint, the endpoints already tried
    (``exclude``), learned ``curves`` and ``margins`` by endpoint id (the prior and the
    default margin where absent), whether decisions carry what was judged
    (``explain``), and the routed pools' models (``pool_models``: pool -> model)."""

    policy: RoutingPolicySpec
    candidates: Sequence[Candidate]
    turn: int = 0
    ring: affinity.Ring | None = None
    session_target: str | None = None
    exclude: frozenset[str] = frozenset()
    curves: Mapping[str, performance.Curve] = dataclasses.field(default_factory=dict)
    margins: Mapping[str, calibration.Margin] = dataclasses.field(default_factory=dict)
    explain: bool = False
    pool_models: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Forward to ``decision.endpoint``."""

    decision: picker.Decision
    turn: int


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Wait in the admission queue for ``waiting`` (a pool, queued or held)."""

    waiting: waitqueue.Waiting
    turn: int


@dataclasses.dataclass(frozen=True, slots=True)
class Refuse:
    """Answer at once: ``too_large`` is the client's (400), ``unavailable`` 503."""

    kind: Literal["too_large", "unavailable"]
    reason: str
    turn: int


Plan = Send | Wait | Refuse


def plan(request: RoutingRequest, snapshot: Snapshot, *, fallback: bool = True) -> Plan:
    """What to do with ``request``; ``fallback`` False asks for no fallback model."""
    turn = snapshot.turn + 1
    outcome = _pick(request, snapshot, turn)
    other = snapshot.policy.failure_handling.fallback_model
    if fallback and isinstance(outcome, picker.NoCapacity) and other and other != request.model:
        turn += 1
        alternative = _pick(dataclasses.replace(request, model=other), snapshot, turn)
        if isinstance(alternative, picker.Decision):
            return Send(alternative, turn)
    if isinstance(outcome, picker.NoCapacity) and outcome.kind == "spilled":
        turn += 1
        outcome = _pick(request, snapshot, turn, tiers=False)
    if isinstance(outcome, picker.Decision):
        return Send(outcome, turn)
    return _unserved(outcome, request.model, snapshot, turn)


def _pick(
    request: RoutingRequest, snapshot: Snapshot, turn: int, *, tiers: bool = True
) -> picker.Decision | picker.NoCapacity:
    s = snapshot
    inputs = picker.Inputs(
        s.policy, turn=turn, ring=s.ring, session_target=s.session_target, exclude=s.exclude,
        curves=s.curves, explain=s.explain, tiers=tiers, margins=s.margins,
    )  # fmt: skip
    return picker.pick(request, s.candidates, inputs)


def _unserved(outcome: picker.NoCapacity, model: str, snapshot: Snapshot, turn: int) -> Plan:
    waiting = wait_reason(
        outcome,
        model,
        discovered=discovered_pools(snapshot.candidates),
        pool_models=snapshot.pool_models,
    )
    if waiting is not None:
        return Wait(waiting, turn)
    kind: Literal["too_large", "unavailable"] = (
        "too_large" if outcome.kind == "too_large" else "unavailable"
    )
    return Refuse(kind, outcome.reason, turn)


def discovered_pools(candidates: Sequence[Candidate]) -> dict[str, str]:
    """Model -> the pool of its first routable endpoint (by id)."""
    found: dict[str, str] = {}
    for candidate in sorted(candidates, key=lambda c: c.id):
        found.setdefault(candidate.endpoint.model, candidate.endpoint.pool)
    return found


def wait_reason(
    outcome: picker.Decision | picker.NoCapacity,
    model: str,
    *,
    discovered: Mapping[str, str],
    pool_models: Mapping[str, str],
) -> waitqueue.Waiting | None:
    """Whether a request for ``model`` that got ``outcome`` waits, and for which pool.

    Saturated endpoints: queued for their pool. No routable endpoint of the model at all
    (``discovered``: model -> pool of its endpoints) while a routed pool serves it
    (``pool_models``: pool -> model; the first such pool by name): held for that pool,
    which the autoscaler starts. Anything else is answered at once.
    """
    if isinstance(outcome, picker.Decision):
        return None
    declared = sorted(pool for pool, served in pool_models.items() if served == model)
    if outcome.kind == "saturated":
        pool = discovered.get(model) or (declared[0] if declared else "")
        return waitqueue.Waiting(pool)
    if outcome.kind == "unavailable" and model not in discovered and declared:
        return waitqueue.Waiting(declared[0], held=True)
    return None
