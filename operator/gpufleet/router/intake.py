"""Intake: from an authenticated, parsed request to a ``Job`` — the served model, the
class and priority, the cost estimate and the affinity keys — or the error a client
caused (401, 403, 404, 400), before anything is admitted or routed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gpufleet.router import body, service
from gpufleet.router.errors import BadRequest, Forbidden, NotFound, Unauthorized
from gpufleet.routing import admission, affinity, cost
from gpufleet.routing.model import RoutingRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One request as parsed, priced and classed, made once (``prepare``): the served
    model (an alias resolved), the body to forward, the tenant, class and priority,
    the cost estimate, and the affinity keys."""

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


def tenant_of(router: service.Router, authorization: str | None) -> str:
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


def prepare(
    router: service.Router, parsed: body.Parsed, *, tenant: str, headers: Mapping[str, str]
) -> Job:
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


def _klass(router: service.Router, tenant: str, named: str | None) -> tuple[str, int]:
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
