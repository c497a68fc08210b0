"""The router's state, and what of it one route plan sees.

``Router`` holds every component, built once by ``build`` (no module-level state).
``plan`` takes a read-only ``snapshot`` of the router for one request and asks
``gpufleet.routing.routeplan`` what to do (an endpoint, possibly of the fallback model
or another spillover tier; wait; or refuse), keeping the turn and the session's
endpoint it moved. The request pipeline (``gpufleet.router.pipeline``) waits in the
admission queue when told to and plans again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.router import explain
from gpufleet.router.config import RouterConfig
from gpufleet.router.gate import Gate
from gpufleet.router.liveconfig import ConfigState
from gpufleet.router.metrics import RouterMetrics
from gpufleet.router.registry import Registry
from gpufleet.router.stats import Stats
from gpufleet.routing import (
    admission,
    affinity,
    calibration,
    performance,
    retrybudget,
    routeplan,
    throughput,
    waitqueue,
)
from gpufleet.routing.model import Candidate, RoutingRequest

log = logging.getLogger("gpufleet.router")
Clock = Callable[[], float]


@dataclasses.dataclass(slots=True)
class Router:
    config: RouterConfig
    registry: Registry
    quotas: admission.Quotas
    keyring: admission.KeyRing
    sessions: affinity.SessionTable
    gate: Gate
    metrics: RouterMetrics
    stats: Stats
    learner: throughput.Learner
    clock: Clock
    predictor: performance.Predictor = dataclasses.field(default_factory=performance.Predictor)
    spread: calibration.Spread = dataclasses.field(default_factory=calibration.Spread)
    attainment: calibration.Attainment = dataclasses.field(default_factory=calibration.Attainment)
    turn: int = 0
    retry_budget: retrybudget.RetryBudget = dataclasses.field(
        default_factory=retrybudget.RetryBudget
    )
    signals_at: float | None = None
    signals_error: str = ""
    draining: bool = False
    config_state: ConfigState = dataclasses.field(default_factory=ConfigState)
    # Set (and replaced) when a new configuration is applied: loops waiting on it wake.
    reconfigured: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def policy(self) -> RoutingPolicySpec:
        return self.config.policy

    def forget(self, endpoint: str) -> None:
        """Drop what was learned about an endpoint that is gone (``Registry.forgetters``)."""
        self.learner.forget(endpoint)
        self.predictor.forget(endpoint)
        self.spread.forget(endpoint)

    def signal_age(self) -> float | None:
        return None if self.signals_at is None else self.clock() - self.signals_at

    @property
    def pool_models(self) -> Mapping[str, str]:
        """Routed pool -> the model it serves, as configured (known with no pod up)."""
        source = self.config.kubernetes
        return source.pool_models if source is not None else {}

    def served_models(self) -> dict[str, str]:
        """Every name clients may use -> the served model it means: the models of the
        routable endpoints and of the routed pools (with no pod up too), and aliases."""
        models = {s.endpoint.model for s in self.registry.slots.values()}
        served = {m: m for m in models | set(self.pool_models.values())}
        aliases = {a.name: a.model for a in self.policy.model_aliases if a.model in served}
        return served | aliases

    def demand(self) -> dict[str, waitqueue.Demand]:
        """Pool -> requests waiting for it, for every routed or discovered pool (zero
        when none wait) and any other pool a request waits for."""
        source = self.config.kubernetes
        pools = {*self.pool_models, *(source.pools or () if source else ())}
        pools |= {s.endpoint.pool for s in self.registry.slots.values()}
        zero = {pool: waitqueue.Demand() for pool in pools}
        return dict(sorted((zero | self.gate.demand()).items()))

    def take_retry(self) -> bool:
        return self.retry_budget.try_retry(self.clock())


def snapshot(
    router: Router, request: RoutingRequest, exclude: frozenset[str]
) -> routeplan.Snapshot:
    """What ``routeplan.plan`` sees of the router for ``request``: learned curves and
    margins of the endpoints of its model and of the fallback model, not yet tried."""
    now = router.clock()
    session = router.sessions.get(request.session, now) if request.session else None
    candidates = router.registry.candidates()
    models = (request.model, router.policy.failure_handling.fallback_model)
    serving = [c for c in candidates if c.endpoint.model in models and c.id not in exclude]
    return routeplan.Snapshot(
        router.policy, candidates, turn=router.turn, ring=router.registry.ring,
        session_target=session, exclude=exclude, curves=curves(router, serving),
        margins=margins(router, serving, now, request.klass),
        explain=router.config.debug_headers, pool_models=router.pool_models,
    )  # fmt: skip


def plan(
    router: Router, request: RoutingRequest, exclude: frozenset[str], *, fallback: bool = True
) -> routeplan.Plan:
    """Plan ``request`` over the router's state now (``routeplan.plan``), and keep what
    the plan moved: the tie-breaking turn, and the session's endpoint when it names one."""
    result = routeplan.plan(request, snapshot(router, request, exclude), fallback=fallback)
    router.turn = result.turn
    if isinstance(result, routeplan.Send):
        explain.sample(result.decision, objective=router.policy.objective, turn=result.turn)
        if request.session:
            router.sessions.put(request.session, result.decision.endpoint.id, router.clock())
    return result


def curves(router: Router, candidates: list[Candidate]) -> dict[str, performance.Curve]:
    """Each candidate's learned performance curve; none (the priors) unless
    ``generationWeights.mode`` is ``auto``, or for strategies that predict nothing."""
    policy = router.policy
    if policy.strategy != "cost" or policy.generation_weights.mode != "auto":
        return {}
    predictor = router.predictor
    return {c.id: predictor.curve(c.id, performance.prior_of(c.endpoint)) for c in candidates}


def margins(
    router: Router, candidates: list[Candidate], now: float, klass: str
) -> dict[str, calibration.Margin]:
    """How far each candidate's latency ran past its predictions lately (the default
    margin where ``curves`` gives no learned curve), tightened by how ``klass``'s
    requests met their SLO lately (``calibration.Attainment``): that feedback is on
    outcomes, not on the curves, so it holds whatever ``generationWeights.mode``."""
    policy = router.policy
    if policy.strategy != "cost":
        return {}
    learned = policy.generation_weights.mode == "auto"
    tightening = router.attainment.factor(klass)
    return {
        c.id: (router.spread.margin(c.id, now) if learned else calibration.DEFAULT).tightened(
            tightening
        )
        for c in candidates
    }
