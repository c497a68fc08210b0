"""Admission in the RoutingPolicy spec: tenants with API keys and limits, and the queue."""

from __future__ import annotations

from typing import Literal

import pydantic

from gpufleet.api import common
from gpufleet.api.common import ApiModel, cel, rules
from gpufleet.api.traffic import ClassName


class Tenant(ApiModel):
    """A client identified by an API key, with its limits."""

    name: str = pydantic.Field(
        max_length=63, pattern=common.DNS_LABEL, description="Tenant name (metrics label)."
    )
    api_key_secret_ref: common.SecretKeyRef = pydantic.Field(
        description="Secret key holding the tenant's API key (sent as Authorization: Bearer)."
    )
    tokens_per_minute: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10**10,
        description="Input + output tokens per minute; unset = unlimited.",
    )
    max_concurrent_requests: int | None = pydantic.Field(
        default=None, ge=1, le=100000, description="Requests in flight at once; unset = unlimited."
    )
    priority: int = pydantic.Field(
        default=0, ge=0, le=1000, description="Higher is admitted first when queued."
    )
    default_class: ClassName | None = pydantic.Field(
        default=None,
        description="Request class when the request names none; unset = the policy's defaultClass.",
    )
    allowed_classes: tuple[ClassName, ...] | None = pydantic.Field(
        default=None,
        max_length=32,
        description=(
            "Request classes this tenant may name (x-gpufleet-class); a request naming "
            "another is refused (403). Unset = admission.allowedClasses."
        ),
    )


class Queue(ApiModel):
    """The bounded admission queue in front of the endpoints."""

    max_size: int = pydantic.Field(
        default=1024,
        ge=0,
        le=1_000_000,
        description=(
            "Requests waiting; when full, the lowest-priority newest request (possibly the "
            "newcomer) gets 429 with Retry-After."
        ),
    )
    timeout_seconds: int = pydantic.Field(
        default=30,
        ge=1,
        le=3600,
        description="Longest wait in the queue; then 503 with Retry-After.",
    )
    order: Literal["priority", "fifo"] = pydantic.Field(
        default="priority",
        description="priority: higher priority first, FIFO within; fifo: arrival order.",
    )


class Admission(ApiModel):
    """Who may send requests and how much."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "!self.requireApiKey || size(self.tenants) > 0",
                "tenants must not be empty when requireApiKey is true",
                field_path=".tenants",
                reason="FieldValueRequired",
            )
        )
    )

    allowed_classes: tuple[ClassName, ...] | None = pydantic.Field(
        default=None,
        max_length=32,
        description=(
            "Request classes that clients without an API key, and tenants that list none "
            "of their own, may name; unset = every class in requestClasses."
        ),
    )
    require_api_key: bool = pydantic.Field(
        default=False, description="Reject requests without a known tenant API key (401)."
    )
    tenants: tuple[Tenant, ...] = pydantic.Field(
        default=(),
        max_length=256,
        description="Known tenants.",
        json_schema_extra=common.list_map("name"),
    )
    anonymous_tokens_per_minute: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10**10,
        description="Token rate of requests without an API key; unset = unlimited.",
    )
    queue: Queue = pydantic.Field(
        default_factory=Queue,
        description="The admission queue.",
        json_schema_extra=common.object_default(Queue),
    )

    @pydantic.model_validator(mode="after")
    def _keys_need_tenants(self) -> Admission:
        if self.require_api_key and not self.tenants:
            raise ValueError("tenants must not be empty when requireApiKey is true")
        if len({t.name for t in self.tenants}) != len(self.tenants):
            raise ValueError("tenants must have unique names")
        return self

    def allowed_for(self, tenant: Tenant | None) -> tuple[str, ...] | None:
        """The request classes a client may name: its tenant's list, else this one;
        None when neither lists any (every declared class)."""
        if tenant is not None and tenant.allowed_classes is not None:
            return tenant.allowed_classes
        return self.allowed_classes
