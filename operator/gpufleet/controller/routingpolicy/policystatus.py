"""The RoutingPolicy status, from its routers' ``/stats`` reports and their Deployment.

Pure; the clock is an argument. ``parse_report`` reads the part of a router's ``/stats``
the operator uses (``config``, ``backends``, ``effectiveWeights``); ``compute`` turns
the reports of the Ready router pods that answered into the status: ``routers`` (how
many answered), ``appliedGeneration`` (the lowest policy generation among them),
``backends`` (max endpoints per pool and GPU over the routers), ``effectiveWeights`` (of
the first router by pod name) and the conditions, with ``controller.modelpool.status``'s rule that
``lastTransitionTime`` moves only when a status flips:

- Ready: the router Deployment is rolled out with every replica ready, at least one
  router answered, every router that answered applies the current generation, and at
  least one endpoint is ready.
- Progressing: True while the Deployment rolls out or a router has yet to apply the
  current generation; False when done, when the policy is invalid, or when a router
  rejected the configuration (waiting would not help).
- Degraded: True when the spec cannot be rendered (``problems``) or a router reports a
  configuration error (it keeps serving its previous configuration).

In sidecar mode there is no Deployment: the routers are containers in application pods
the user runs. Without any, the policy is not Ready (reason ``NoRouters``: nothing routes
by it) but neither Progressing nor Degraded — the operator published the configuration
and has nothing left to do. Once sidecars answer, the rules above apply to them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Annotated

import pydantic
from pydantic import alias_generators

from gpufleet.api.routingpolicy import BackendStatus, RoutingPolicySpec, RoutingPolicyStatus
from gpufleet.controller import conditions, observe

_Item = tuple[str, str, str, str]  # a condition's type, status, reason, message
# Events for flipped conditions: the ModelPool's rule serves any gpufleet status.
transitions = conditions.transitions


class _Wire(pydantic.BaseModel):
    # /stats carries much more than the operator reads; unknown keys are not an error.
    model_config = pydantic.ConfigDict(
        extra="ignore", frozen=True, alias_generator=alias_generators.to_camel
    )


class _Config(_Wire):
    policy_generation: int | None = pydantic.Field(default=None, ge=0)
    error: str = ""


class _Backend(_Wire):
    pool: str
    gpu: str
    endpoints: int = pydantic.Field(ge=0)
    ready_endpoints: int = pydantic.Field(ge=0)


class _Stats(_Wire):
    config: _Config = _Config()
    backends: tuple[_Backend, ...] = ()
    effective_weights: dict[str, Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]] = (
        pydantic.Field(default_factory=dict)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RouterReport:
    """What one router pod says it runs. ``policy_generation`` is None when it has not
    applied a rendered policy; ``error`` is why its latest configuration change could
    not be applied (empty when it could)."""

    pod: str
    policy_generation: int | None
    error: str = ""
    backends: tuple[BackendStatus, ...] = ()
    effective_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)


def _reason(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def parse_report(pod_name: str, raw: object) -> RouterReport | str:
    """The report in a router's decoded ``/stats`` body, or a one-line reason naming the
    pod and the key at fault when the body does not have the expected shape."""
    try:
        stats = _Stats.model_validate(raw)
        backends = tuple(
            BackendStatus(
                pool=b.pool, gpu=b.gpu, endpoints=b.endpoints, ready_endpoints=b.ready_endpoints
            )
            for b in stats.backends
        )
    except pydantic.ValidationError as exc:
        return f"router {pod_name}: GET /stats: {_reason(exc)}"
    return RouterReport(
        pod=pod_name,
        policy_generation=stats.config.policy_generation,
        error=stats.config.error,
        backends=backends,
        effective_weights=dict(stats.effective_weights),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    spec: RoutingPolicySpec
    generation: int
    pools: tuple[str, ...]
    deployment: observe.ObservedChild | None
    answered: tuple[RouterReport, ...]
    silent: tuple[str, ...]
    ready_endpoints: int

    @property
    def sidecar(self) -> bool:
        return self.spec.router.mode == "sidecar"


def merge_backends(reports: Sequence[RouterReport]) -> tuple[BackendStatus, ...]:
    """One row per (pool, GPU), sorted: the most endpoints any router found and the most
    any router can route to (routers discover the same pods; one may lag)."""
    rows: dict[tuple[str, str], tuple[int, int]] = {}
    for b in (b for r in reports for b in r.backends):
        found, ready = rows.get((b.pool, b.gpu), (0, 0))
        rows[(b.pool, b.gpu)] = (max(found, b.endpoints), max(ready, b.ready_endpoints))
    return tuple(
        BackendStatus(pool=pool, gpu=gpu, endpoints=found, ready_endpoints=ready)
        for (pool, gpu), (found, ready) in sorted(rows.items())
    )


def applied_generation(reports: Sequence[RouterReport]) -> int | None:
    """The lowest generation the routers apply; None without routers or when one has
    applied none."""
    generations = [r.policy_generation for r in reports]
    if not generations or None in generations:
        return None
    return min(g for g in generations if g is not None)


def _rollout(seen: _Seen) -> str:
    """Why the router Deployment is not yet as desired; empty when it is (or sidecar)."""
    want, live = seen.spec.router.replicas, seen.deployment
    if seen.sidecar:
        return ""
    if live is None:
        return "the router Deployment is not created yet"
    if not live.rolled_out:
        return f"rolling out: {live.updated_replicas}/{live.replicas or want} routers updated"
    if live.ready_replicas < want:
        return f"{live.ready_replicas}/{want} routers ready"
    return ""


def _behind(seen: _Seen) -> str:
    late = [r for r in seen.answered if r.policy_generation != seen.generation]
    return ", ".join(f"{r.pod} (at {r.policy_generation})" for r in late)


def _errors(seen: _Seen) -> str:
    return "; ".join(f"{r.pod}: {r.error}" for r in seen.answered if r.error)


def _no_endpoints(seen: _Seen) -> str:
    if not seen.pools:
        return "poolSelector matches no ModelPool"
    return f"no ready endpoint in pools {', '.join(seen.pools)}"


def _ready(seen: _Seen) -> _Item:
    rollout, behind = _rollout(seen), _behind(seen)
    if seen.sidecar and not seen.answered and not seen.silent:
        return ("Ready", "False", "NoRouters",
                "sidecar mode: no router container runs yet (docs/router.md)")  # fmt: skip
    if rollout:
        return ("Ready", "False", "RoutersNotReady", rollout)
    if not seen.answered:
        detail = "; ".join(seen.silent) or "no router pod is Ready"
        return ("Ready", "False", "RoutersUnreachable", f"no router answered: {detail}")
    if behind:
        msg = f"generation {seen.generation} not applied by {behind}"
        return ("Ready", "False", "ConfigNotApplied", msg)
    if seen.ready_endpoints == 0:
        return ("Ready", "False", "NoReadyEndpoints", _no_endpoints(seen))
    msg = (f"{len(seen.answered)} routers apply generation {seen.generation}; "
           f"{seen.ready_endpoints} ready endpoints in {len(seen.pools)} pools")  # fmt: skip
    return ("Ready", "True", "Routing", msg)


def _progressing(seen: _Seen) -> _Item:
    errors, rollout, behind = _errors(seen), _rollout(seen), _behind(seen)
    if errors:
        return ("Progressing", "False", "ConfigRejected", f"a router rejected it: {errors}")
    if rollout:
        return ("Progressing", "True", "RollingOut", rollout)
    if behind:
        msg = f"routers applying generation {seen.generation}: {behind}"
        return ("Progressing", "True", "ApplyingConfig", msg)
    return ("Progressing", "False", "Complete", "the routers' configuration is published")


def _degraded(seen: _Seen) -> _Item:
    errors = _errors(seen)
    if errors:
        msg = f"routers keep serving their previous configuration: {errors}"
        return ("Degraded", "True", "ConfigError", msg)
    return ("Degraded", "False", "AsExpected", "no router reports a configuration error")


def _blocked(problems: tuple[str, ...]) -> list[_Item]:
    msg = "; ".join(problems)
    return [
        ("Ready", "False", "InvalidSpec", msg),
        ("Progressing", "False", "InvalidSpec", msg),
        ("Degraded", "True", "InvalidSpec", msg),
    ]


def compute(
    spec: RoutingPolicySpec | None,
    *,
    generation: int,
    pools: Sequence[str],
    deployment: observe.ObservedChild | None,
    reports: Sequence[RouterReport | str],
    problems: tuple[str, ...],
    previous: RoutingPolicyStatus | None,
    now: datetime.datetime,
) -> RoutingPolicyStatus:
    """The status to write; equal to ``previous`` when nothing observable changed.

    ``reports`` has one entry per Ready router pod polled: its report, or why it gave
    none (``routerstats``). ``spec`` is None when the policy could not be parsed, in
    which case ``problems`` says why; routers that answered are still counted, since
    they keep serving the last configuration that was rendered.
    """
    answered = tuple(sorted((r for r in reports if isinstance(r, RouterReport)),
                            key=lambda r: r.pod))  # fmt: skip
    backends = merge_backends(answered)
    ready = sum(b.ready_endpoints for b in backends)
    if spec is None or problems:
        items = _blocked(problems or ("the policy could not be read",))
    else:
        silent = tuple(r for r in reports if isinstance(r, str))
        seen = _Seen(spec, generation, tuple(pools), deployment, answered, silent, ready)
        items = [_ready(seen), _progressing(seen), _degraded(seen)]
    old = {c.type: c for c in (previous.conditions if previous else ())}
    stamp = conditions.rfc3339(now)
    return RoutingPolicyStatus(
        observed_generation=generation,
        conditions=tuple(
            conditions.condition(c, old, generation=generation, now=stamp) for c in items
        ),
        backends=backends,
        ready_endpoints=ready,
        pools=tuple(pools),
        routers=len(answered),
        applied_generation=applied_generation(answered),
        effective_weights=dict(answered[0].effective_weights) if answered else {},
    )
