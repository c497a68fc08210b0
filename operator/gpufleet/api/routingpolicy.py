"""The RoutingPolicy API: how requests to one or more ModelPools are routed and admitted.

The router (``gpufleet.router``) reads this spec as its configuration: targets and model
aliases, the scoring strategy and weights, per-generation throughput weights, token
estimation, request classes with SLOs, large-request triggers, affinity, admission,
failure handling, spillover tiers, the Prometheus source and the router Deployment's
shape. Cross-field
rules are CEL on the type and repeated as pydantic validators.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from gpufleet.api import common
from gpufleet.api.admission import Admission
from gpufleet.api.common import ApiModel, cel, rules
from gpufleet.api.runtime import FailureHandling, PrometheusSource, Router
from gpufleet.api.spillover import Spillover
from gpufleet.api.traffic import (
    Affinity,
    ClassName,
    GenerationWeights,
    HeaderName,
    LargeRequests,
    ModelAlias,
    RequestClass,
    ScorerWeights,
    Slo,
    TokenEstimation,
)

PoolName = Annotated[str, pydantic.Field(max_length=253, pattern=common.DNS_SUBDOMAIN)]


_WEIGHT_SUM = " + ".join(
    f"self.scorerWeights.{w}"
    for w in (
        "load",
        "kvCache",
        "queue",
        "prefixAffinity",
        "sessionAffinity",
        "cost",
        "classPreference",
    )
)
_DEFAULT_CLASSES = (
    RequestClass(name="interactive", priority=100, slo=Slo(ttft_millis=2000, tpot_millis=100)),
    RequestClass(
        name="batch",
        priority=10,
        preferred_generations=("A100-80GB", "A100-40GB", "L40S"),
        prefer_spot=True,
    ),
)


class RoutingPolicySpec(ApiModel):
    """Desired routing, admission and router shape for one or more ModelPools."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "(size(self.pools) > 0) != has(self.poolSelector)",
                "exactly one of pools and poolSelector must be set",
                field_path=".pools",
                reason="FieldValueRequired",
            ),
            cel(
                "size(self.requestClasses) == 0 "
                "|| self.requestClasses.exists(c, c.name == self.defaultClass)",
                "defaultClass must name one of requestClasses",
                field_path=".defaultClass",
            ),
            cel(
                "self.admission.tenants.all(t, !has(t.defaultClass) "
                "|| self.requestClasses.exists(c, c.name == t.defaultClass))",
                "admission.tenants[].defaultClass must name one of requestClasses",
                field_path=".admission.tenants",
            ),
            cel(
                "self.admission.tenants.all(t, !has(t.allowedClasses) || "
                "t.allowedClasses.all(n, self.requestClasses.exists(c, c.name == n))) && "
                "(!has(self.admission.allowedClasses) || self.admission.allowedClasses.all("
                "n, self.requestClasses.exists(c, c.name == n)))",
                "allowedClasses must name classes of requestClasses",
                field_path=".admission",
            ),
            cel(
                "self.objective == 'balanced' || self.strategy == 'cost'",
                "objective cost or latency needs strategy cost",
                field_path=".objective",
            ),
            cel(
                f"self.strategy != 'cost' || {_WEIGHT_SUM} > 0.0",
                "scorerWeights must not all be zero when strategy is cost",
                field_path=".scorerWeights",
            ),
        )
    )

    pools: tuple[PoolName, ...] = pydantic.Field(
        default=(),
        max_length=32,
        description="ModelPools (names, same namespace) routed; exclusive with poolSelector.",
    )
    pool_selector: common.LabelSelector | None = pydantic.Field(
        default=None, description="Label selector of the ModelPools routed; exclusive with pools."
    )
    model_aliases: tuple[ModelAlias, ...] = pydantic.Field(
        default=(),
        max_length=64,
        description="Other names clients may use for the served models.",
        json_schema_extra=common.list_map("name"),
    )
    strategy: Literal["round-robin", "least-request", "cost"] = pydantic.Field(
        default="cost",
        description="round-robin, least-request, or cost (lowest expected completion cost).",
    )
    objective: Literal["balanced", "cost", "latency"] = pydantic.Field(
        default="balanced",
        description=(
            "What the cost strategy optimises. balanced: the weighted scorers alone; "
            "cost: the lowest price per token (price x TP / predicted throughput) among "
            "endpoints predicted to meet the request class's SLO, the best predicted "
            "latency when none does; latency: the least predicted TTFT + decode time. "
            "Needs strategy cost."
        ),
    )
    scorer_weights: ScorerWeights = pydantic.Field(
        default_factory=ScorerWeights,
        description="Weights of the cost strategy's scorers.",
        json_schema_extra=common.object_default(ScorerWeights),
    )
    generation_weights: GenerationWeights = pydantic.Field(
        default_factory=GenerationWeights,
        description="Per-generation throughput weights.",
        json_schema_extra=common.object_default(GenerationWeights),
    )
    token_estimation: TokenEstimation = pydantic.Field(
        default_factory=TokenEstimation,
        description="How request tokens are estimated.",
        json_schema_extra=common.object_default(TokenEstimation),
    )
    request_classes: tuple[RequestClass, ...] = pydantic.Field(
        default=_DEFAULT_CLASSES,
        max_length=16,
        description=(
            "Request classes; default interactive (priority 100) and batch (priority 10, "
            "preferSpot)."
        ),
        json_schema_extra=common.list_map("name"),
    )
    default_class: ClassName = pydantic.Field(
        default="interactive", description="Class of requests that name none."
    )
    class_header: HeaderName = pydantic.Field(
        default="x-gpufleet-class", description="Request header naming the class."
    )
    large_requests: LargeRequests = pydantic.Field(
        default_factory=LargeRequests,
        description="Large-request triggers and placement.",
        json_schema_extra=common.object_default(LargeRequests),
    )
    affinity: Affinity = pydantic.Field(
        default_factory=Affinity,
        description="Prefix and session affinity.",
        json_schema_extra=common.object_default(Affinity),
    )
    admission: Admission = pydantic.Field(
        default_factory=Admission,
        description="Tenants, limits and the admission queue.",
        json_schema_extra=common.object_default(Admission),
    )
    failure_handling: FailureHandling = pydantic.Field(
        default_factory=FailureHandling,
        description="Timeouts, retries, circuit breaker.",
        json_schema_extra=common.object_default(FailureHandling),
    )
    spillover: Spillover = pydantic.Field(
        default_factory=Spillover,
        description=(
            "GPU-generation tiers filled in order, each up to its saturation; "
            "failureHandling.fallbackModel when all are saturated."
        ),
        json_schema_extra=common.object_default(Spillover),
    )
    prometheus: PrometheusSource | None = pydantic.Field(
        default=None, description="Metrics source; unset = the router's own counters only."
    )
    router: Router = pydantic.Field(
        default_factory=Router,
        description="The router Deployment.",
        json_schema_extra=common.object_default(Router),
    )

    @pydantic.model_validator(mode="after")
    def _cross_field(self) -> RoutingPolicySpec:
        if bool(self.pools) == (self.pool_selector is not None):
            raise ValueError("exactly one of pools and poolSelector must be set")
        classes = {c.name for c in self.request_classes}
        if len(classes) != len(self.request_classes):
            raise ValueError("requestClasses must have unique names")
        if classes and self.default_class not in classes:
            raise ValueError("defaultClass must name one of requestClasses")
        if any(t.default_class not in (None, *classes) for t in self.admission.tenants):
            raise ValueError("admission.tenants[].defaultClass must name one of requestClasses")
        lists = [
            self.admission.allowed_classes,
            *(t.allowed_classes for t in self.admission.tenants),
        ]
        if any(set(named or ()) - classes for named in lists):
            raise ValueError("allowedClasses must name classes of requestClasses")
        for who, default, allowed in self._class_defaults():
            if allowed is not None and default not in allowed:
                raise ValueError(f"{who}: the default class {default!r} must be allowed")
        if self.objective != "balanced" and self.strategy != "cost":
            raise ValueError(f"objective {self.objective} needs strategy cost")
        if self.strategy == "cost" and not any(self.scorer_weights.model_dump().values()):
            raise ValueError("scorerWeights must not all be zero when strategy is cost")
        return self

    def _class_defaults(self) -> list[tuple[str, str, tuple[str, ...] | None]]:
        """(where, default class, allowed classes) for clients without a key and for
        each tenant: a request naming no class gets its default, which must be allowed."""
        admission = self.admission
        rows = [("admission.allowedClasses", self.default_class, admission.allowed_classes)]
        for t in admission.tenants:
            allowed = (
                t.allowed_classes if t.allowed_classes is not None else admission.allowed_classes
            )
            where = f"admission.tenants[{t.name}].allowedClasses"
            rows.append((where, t.default_class or self.default_class, allowed))
        return rows

    def request_class(self, name: str) -> RequestClass | None:
        """The request class called ``name`` (None: the policy declares none by it)."""
        return next((c for c in self.request_classes if c.name == name), None)


class BackendStatus(ApiModel):
    """Endpoints of one pool on one GPU generation."""

    pool: str = pydantic.Field(max_length=253, description="ModelPool name.")
    gpu: str = pydantic.Field(max_length=63, description="GPU generation.")
    endpoints: int = pydantic.Field(default=0, ge=0, description="Endpoints discovered.")
    ready_endpoints: int = pydantic.Field(
        default=0, ge=0, description="Endpoints healthy and routable."
    )


class RoutingPolicyStatus(common.ObservedStatus):
    """Observed state of a RoutingPolicy."""

    backends: tuple[BackendStatus, ...] = pydantic.Field(
        default=(),
        description="Endpoints per pool and generation.",
        json_schema_extra=common.list_map("pool", "gpu"),
    )
    ready_endpoints: int = pydantic.Field(default=0, ge=0, description="Sum of ready endpoints.")
    pools: tuple[str, ...] = pydantic.Field(
        default=(), description="ModelPools routed (pools, or those poolSelector matches)."
    )
    routers: int = pydantic.Field(default=0, ge=0, description="Router replicas ready.")
    applied_generation: int | None = pydantic.Field(
        default=None,
        description="Lowest policy generation that every ready router has applied.",
    )
    effective_weights: dict[str, float] = pydantic.Field(
        default_factory=dict,
        description="Throughput weight per generation in use (catalog, override or learned).",
    )


PRINTER_COLUMNS = (
    {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy"},
    {"name": "Endpoints", "type": "integer", "jsonPath": ".status.readyEndpoints"},
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)
