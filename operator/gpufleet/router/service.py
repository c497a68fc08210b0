"""The router's state and the request path up to the choice of an endpoint.

``Router`` holds every component, built once by ``build`` (no module-level state).
``prepare`` turns an authenticated, parsed request into a ``Job`` (served model, class,
priority, cost estimate); ``route`` asks the picker for an endpoint, switching to the
fallback model when the requested one has no capacity or every spillover tier is
saturated (then, when the fallback has none either, routing over all tiers), and
otherwise waiting in the admission queue while all are saturated (queued) or while the
routed pool that serves the model has no ready endpoint (held: scale from zero;
``wait_reason`` decides which).
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
    filters,
    performance,
    picker,
    retrybudget,
    throughput,
    waitqueue,
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

    def discovered_pools(self) -> dict[str, str]:
        """Model -> the pool of its first routable endpoint (by id)."""
        found: dict[str, str] = {}
        for endpoint_id in sorted(self.registry.slots):
            endpoint = self.registry.slots[endpoint_id].endpoint
            found.setdefault(endpoint.model, endpoint.pool)
        return found

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


async def route(router: Router, job: Job, exclude: frozenset[str]) -> picker.Decision:
    """An endpoint for ``job``: the fallback model when the requested one has no capacity
    or its spillover tiers are all saturated; queued while saturated."""
    outcome = _pick(router, job, job.model, exclude)
    fallback = router.policy.failure_handling.fallback_model
    if isinstance(outcome, picker.NoCapacity) and fallback and fallback != job.model:
        alternative = _pick(router, job, fallback, exclude)
        if isinstance(alternative, picker.Decision):
            return alternative
    outcome = _overflow(router, job, exclude, outcome)
    waiting = _wait_reason(router, job.model, outcome)
    if waiting is not None:
        outcome = await _queued(router, job, exclude, waiting)
    if isinstance(outcome, picker.Decision):
        return outcome
    if outcome.kind == "too_large":
        raise BadRequest(outcome.reason, param="messages")
    raise Unavailable(outcome.reason, retry_after_s=1)


def _overflow(
    router: Router, job: Job, exclude: frozenset[str], outcome: picker.Decision | picker.NoCapacity
) -> picker.Decision | picker.NoCapacity:
    """Every spillover tier saturated and no fallback took the request: a tier's
    threshold is a preference, not a limit, so any endpoint with room serves it."""
    if isinstance(outcome, picker.NoCapacity) and outcome.kind == "spilled":
        return _pick(router, job, job.model, exclude, tiers=False)
    return outcome


def _pick(
    router: Router, job: Job, model: str, exclude: frozenset[str], *, tiers: bool = True
) -> picker.Decision | picker.NoCapacity:
    now = router.clock()
    session = router.sessions.get(job.session, now) if job.session else None
    router.turn += 1
    candidates = router.registry.candidates()
    serving = [c for c in candidates if c.endpoint.model == model and c.id not in exclude]
    inputs = picker.Inputs(
        router.policy, turn=router.turn, ring=router.registry.ring, session_target=session,
        exclude=exclude, curves=curves(router, serving), explain=router.config.debug_headers,
        tiers=tiers, margins=margins(router, serving, now, job.klass),
    )  # fmt: skip
    outcome = picker.pick(job.routing_request(model), candidates, inputs)
    if isinstance(outcome, picker.Decision):
        explain.sample(outcome, objective=router.policy.objective, turn=router.turn)
    if isinstance(outcome, picker.Decision) and job.session:
        router.sessions.put(job.session, outcome.endpoint.id, now)
    return outcome


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


def _wait_reason(
    router: Router, model: str, outcome: picker.Decision | picker.NoCapacity
) -> waitqueue.Waiting | None:
    if isinstance(outcome, picker.Decision):
        return None
    return wait_reason(
        outcome, model, discovered=router.discovered_pools(), pool_models=router.pool_models
    )


async def _queued(
    router: Router, job: Job, exclude: frozenset[str], waiting: waitqueue.Waiting
) -> picker.Decision | picker.NoCapacity:
    """Wait in ``job.model``'s lane until woken with an endpoint free for it."""
    gate, entered = router.gate, router.clock()
    ticket = gate.enter(job.priority, waiting, lane=job.model)
    outcome: picker.Decision | picker.NoCapacity | None = None
    try:
        while True:
            await gate.wait(ticket, entered + router.policy.admission.queue.timeout_seconds)
            outcome = _overflow(router, job, exclude, _pick(router, job, job.model, exclude))
            now_waiting = _wait_reason(router, job.model, outcome)
            if now_waiting is None:
                return outcome
            room = filters.free_slots(job.model, router.registry.candidates())
            gate.retry(ticket, now_waiting, room=room)
    finally:
        gate.leave(ticket, served=isinstance(outcome, picker.Decision))
        router.metrics.queue_wait.labels(job.klass).observe(router.clock() - entered)
