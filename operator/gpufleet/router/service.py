"""The router's state and the request path up to the choice of an endpoint.

``Router`` holds every component, built once by ``build`` (no module-level state).
``prepare`` turns an authenticated, parsed request into a ``Job`` (served model, class,
priority, cost estimate); ``plan`` takes a read-only ``snapshot`` of the router for it
and asks ``gpufleet.routing.routeplan`` what to do (an endpoint, possibly of the
fallback model or another spillover tier; wait; or refuse), keeping the turn and the
session it moved; ``route`` waits in the admission queue while the plan says wait
(queued behind saturated endpoints, or held while the routed pool that serves the
model has no ready endpoint: scale from zero) and plans again when woken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.router import body, explain
from gpufleet.router.config import RouterConfig
from gpufleet.router.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from gpufleet.router.gate import Gate
from gpufleet.router.liveconfig import ConfigState
from gpufleet.router.metrics import RouterMetrics
from gpufleet.router.registry import Registry
from gpufleet.router.stats import Stats
from gpufleet.routing import (
    admission,
    affinity,
    calibration,
    cost,
    performance,
    picker,
    retrybudget,
    routeplan,
    throughput,
)
from gpufleet.routing.model import Candidate, RoutingRequest

log = logging.getLogger("gpufleet.router")
Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    parsed: body.Parsed
    model: str
    payload: bytes
    tenant: str
    klass: str
    priority: int
    estimate: cost.Estimate
    session: str | None
    prefix_key: int | None

    def payload_for(self, model: str) -> bytes:
        """The body to forward to an endpoint of ``model`` (the fallback model's
        endpoints must be asked for their own model, or they answer 404)."""
        return self.payload if model == self.model else body.with_model(self.parsed, model)

    def routing_request(self, model: str) -> RoutingRequest:
        e = self.estimate
        return RoutingRequest(
            model, e.input_tokens, e.output_tokens, e.kv_mb, self.prefix_key, self.session,
            self.tenant, self.klass,
        )  # fmt: skip


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

    def demand(self) -> dict[str, admission.Demand]:
        """Pool -> requests waiting for it, for every routed or discovered pool (zero
        when none wait) and any other pool a request waits for."""
        source = self.config.kubernetes
        pools = {*self.pool_models, *(source.pools or () if source else ())}
        pools |= {s.endpoint.pool for s in self.registry.slots.values()}
        zero = {pool: admission.Demand() for pool in pools}
        return dict(sorted((zero | self.gate.demand()).items()))

    def take_retry(self) -> bool:
        return self.retry_budget.try_retry(self.clock())


def tenant_of(router: Router, authorization: str | None) -> str:
    """The authenticated tenant; ``Unauthorized`` for a wrong key, or a missing one when
    keys are required. Client-supplied identity headers are never consulted."""
    key = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        key = value.strip()
    if not router.policy.admission.tenants:
        return admission.ANONYMOUS  # no tenants: keys are not checked (clients send any)
    try:
        tenant = router.keyring.tenant(key)
    except admission.UnknownKey:
        raise Unauthorized("the API key is not valid") from None
    if tenant is None and router.policy.admission.require_api_key:
        raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
    return tenant or admission.ANONYMOUS


def prepare(router: Router, parsed: body.Parsed, *, tenant: str, headers: Mapping[str, str]) -> Job:
    """Resolve model and class, and estimate the cost; the errors a client can cause."""
    model = router.served_models().get(parsed.model)
    if model is None:
        raise NotFound(f"the model {parsed.model!r} is not served here", param="model")
    policy = router.policy
    klass, priority = _klass(router, tenant, headers.get(policy.class_header))
    estimation = policy.token_estimation
    max_tokens = 0 if parsed.kind == "embedding" else parsed.max_tokens
    est = cost.estimate(
        input_token_count=cost.input_tokens(len(parsed.text), estimation),
        max_tokens=max_tokens,
        estimation=estimation,
        kv_bytes=cost.kv_bytes_per_token(model),
        choices=parsed.n,
    )
    declared = policy.request_class(klass)
    limit = declared.max_input_tokens if declared else None
    if limit is not None and est.input_tokens > limit:
        raise BadRequest(f"about {est.input_tokens} input tokens exceed class {klass}'s {limit}")
    session_cfg = policy.affinity.session
    prefix_cfg = policy.affinity.prefix
    return Job(
        parsed=parsed,
        model=model,
        payload=body.with_model(parsed, model),
        tenant=tenant,
        klass=klass,
        priority=priority,
        estimate=est,
        session=_session(headers.get(session_cfg.header), tenant) if session_cfg.enabled else None,
        prefix_key=affinity.prefix_key(parsed.text, prefix_cfg.prefix_chars)
        if prefix_cfg.enabled
        else None,
    )


def _session(sent: str | None, tenant: str) -> str | None:
    return affinity.session_key(tenant, sent) if sent else None


def _klass(router: Router, tenant: str, named: str | None) -> tuple[str, int]:
    policy = router.policy
    classes = {c.name: c for c in policy.request_classes}
    tenants = {t.name: t for t in policy.admission.tenants}
    spec = tenants.get(tenant)
    name = named or (spec.default_class if spec and spec.default_class else policy.default_class)
    if classes and name not in classes:
        raise BadRequest(
            f"header {policy.class_header} must name one of: {', '.join(classes)}",
            param=policy.class_header,
        )
    if not classes and name != policy.default_class:
        # Class names become metrics labels: only declared ones, or the default.
        raise BadRequest(
            f"header {policy.class_header}: this policy declares no request classes; "
            f"omit it or send {policy.default_class!r}",
            param=policy.class_header,
        )
    allowed = policy.admission.allowed_for(spec)
    if named and allowed is not None and name not in allowed:
        who = f"tenant {tenant}" if spec else "a client without an API key"
        raise Forbidden(
            f"{who} may not use request class {name!r} (header {policy.class_header}); "
            f"allowed: {', '.join(allowed) or 'none'}",
            param=policy.class_header,
        )
    klass_priority = classes[name].priority if classes else 0
    # Class priority dominates; the tenant's breaks ties within a class.
    return name, klass_priority * 1001 + (spec.priority if spec else 0)


def admit(router: Router, job: Job) -> None:
    """Take the tenant's tokens and a concurrency slot; ``RateLimited`` when over."""
    e = job.estimate
    verdict = router.quotas.admit(job.tenant, e.input_tokens + e.output_tokens, router.clock())
    if not verdict.admitted:
        raise RateLimited(verdict.reason, retry_after_s=verdict.retry_after_s)


def snapshot(router: Router, job: Job, exclude: frozenset[str]) -> routeplan.Snapshot:
    """What ``routeplan.plan`` sees of the router for ``job``: learned curves and margins
    of the endpoints of the request's model and of the fallback model, not yet tried."""
    now = router.clock()
    session = router.sessions.get(job.session, now) if job.session else None
    candidates = router.registry.candidates()
    models = (job.model, router.policy.failure_handling.fallback_model)
    serving = [c for c in candidates if c.endpoint.model in models and c.id not in exclude]
    return routeplan.Snapshot(
        router.policy, candidates, turn=router.turn, ring=router.registry.ring,
        session_target=session, exclude=exclude, curves=curves(router, serving),
        margins=margins(router, serving, now, job.klass), explain=router.config.debug_headers,
        pool_models=router.pool_models,
    )  # fmt: skip


def plan(
    router: Router, job: Job, exclude: frozenset[str], *, fallback: bool = True
) -> routeplan.Plan:
    """Plan ``job`` over the router's state now, and keep what the plan moved: the
    tie-breaking turn, and the session's endpoint when it names one."""
    result = routeplan.plan(
        job.routing_request(job.model), snapshot(router, job, exclude), fallback=fallback
    )
    router.turn = result.turn
    if isinstance(result, routeplan.Send):
        explain.sample(result.decision, objective=router.policy.objective, turn=result.turn)
        if job.session:
            router.sessions.put(job.session, result.decision.endpoint.id, router.clock())
    return result


async def route(router: Router, job: Job, exclude: frozenset[str]) -> picker.Decision:
    """An endpoint for ``job`` (``routeplan.plan``), after waiting in the admission
    queue while the plan says wait; ``BadRequest`` or ``Unavailable`` when refused."""
    result = plan(router, job, exclude)
    if isinstance(result, routeplan.Wait):
        result = await _queued(router, job, exclude, result.waiting)
    if isinstance(result, routeplan.Send):
        return result.decision
    if result.kind == "too_large":
        raise BadRequest(result.reason, param="messages")
    raise Unavailable(result.reason, retry_after_s=1)


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


async def _queued(
    router: Router, job: Job, exclude: frozenset[str], waiting: admission.Waiting
) -> routeplan.Send | routeplan.Refuse:
    queue = router.policy.admission.queue
    entered = router.clock()
    ticket = router.gate.enter(job.priority, waiting)
    try:
        while True:
            await router.gate.wait(ticket, entered + queue.timeout_seconds)
            result = plan(router, job, exclude, fallback=False)
            if not isinstance(result, routeplan.Wait):
                return result
            router.gate.mark(ticket, result.waiting)
    finally:
        router.gate.leave(ticket)
        router.metrics.queue_wait.labels(job.klass).observe(router.clock() - entered)
