"""Building blocks shared by the ModelPool and RoutingPolicy APIs.

``ApiModel`` fixes the conventions of every API type: snake_case attributes with
camelCase aliases, unknown fields rejected, immutable values. ``cel`` writes one
``x-kubernetes-validations`` rule; rules live on the type whose fields they relate, and
each has a pydantic twin so that code validating a body without an API server reaches
the same verdict. The Literal name lists are checked against the catalogs by unit tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import alias_generators

from gpufleet.apigroup import API_VERSION as API_VERSION
from gpufleet.apigroup import GROUP as GROUP
from gpufleet.apigroup import VERSION as VERSION

# The canonical names of gpufleet.hardware.catalog.GPUS, as an enum the API server checks.
GpuName = Literal["A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "B200"]
GPU_NAMES: tuple[str, ...] = get_args(GpuName)
# The names of gpufleet.planning.models.MODELS.
CatalogModelName = Literal[
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "mistral-7b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen2.5-7b",
    "qwen2.5-32b",
    "qwen2.5-72b",
]
# Weight and KV-cache precisions (vLLM's --dtype / --quantization and --kv-cache-dtype
# choices); gpufleet.planning.precision gives each its bytes per value.
WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "awq", "gptq"]
KvCacheDtype = Literal["auto", "bf16", "fp16", "fp8"]
# A pool's workload class; gpufleet.planning.batching turns it into vLLM's token budget.
WorkloadClass = Literal["interactive", "batch", "mixed"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Names of Kubernetes objects (Secrets, PriorityClasses, ModelPools): DNS subdomains.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Kubernetes resource quantity ("500m", "2", "4Gi").
QUANTITY = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
# A label value (at most 63 characters, Kubernetes' limit).
LabelValue = Annotated[str, pydantic.Field(max_length=63)]


class ApiModel(pydantic.BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, strict. The
    router's configuration file (``router.config``) and the chart's values
    (``chart.values``) keep the same conventions by deriving from it."""

    model_config = pydantic.ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        alias_generator=alias_generators.to_camel,
        validate_default=True,
    )


def cel(
    rule: str, message: str, *, field_path: str | None = None, reason: str | None = None
) -> dict[str, str]:
    """One CEL rule for ``x-kubernetes-validations``; ``message`` must name the field."""
    out = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def rules(*items: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules."""
    return {"x-kubernetes-validations": list(items)}


def list_map(*keys: str) -> dict[str, Any]:
    """``json_schema_extra`` making a list merge by ``keys`` under server-side apply."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def object_default(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """``json_schema_extra`` for an optional object whose own fields all have defaults.

    The CRD default is the whole default object, not ``{}``: the API server checks an
    object default against the type's CEL rules *without* applying nested defaults, and
    a full default also makes ``kubectl get -o yaml`` show every effective value.
    """
    return {"default": model().model_dump(mode="json", by_alias=True, exclude_none=True)}


class SecretKeyRef(ApiModel):
    """A key of a Secret in the object's namespace."""

    name: str = pydantic.Field(
        max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret."
    )
    key: str = pydantic.Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret's data.",
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the object's namespace."""

    name: str = pydantic.Field(
        max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the ConfigMap."
    )
    key: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the ConfigMap's data.",
    )


class LabelSelectorRequirement(ApiModel):
    """One ``matchExpressions`` term of a label selector."""

    key: str = pydantic.Field(min_length=1, max_length=317, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = pydantic.Field(
        description="How the key relates to the values."
    )
    values: tuple[LabelValue, ...] = pydantic.Field(
        default=(),
        max_length=64,
        description="Label values; non-empty for In/NotIn, empty for Exists/DoesNotExist.",
    )


class LabelSelector(ApiModel):
    """A Kubernetes label selector."""

    match_labels: dict[str, LabelValue] = pydantic.Field(
        default_factory=dict,
        max_length=64,
        description="Labels an object must carry, all of them.",
    )
    match_expressions: tuple[LabelSelectorRequirement, ...] = pydantic.Field(
        default=(), max_length=16, description="Set-based requirements, all of them."
    )


class Condition(ApiModel):
    """A status condition, as in ``metav1.Condition``."""

    type: str = pydantic.Field(
        max_length=316, description="Condition type (Ready, Progressing, Degraded)."
    )
    status: Literal["True", "False", "Unknown"] = pydantic.Field(description="Condition status.")
    reason: str = pydantic.Field(
        default="",
        max_length=1024,
        description="One-word CamelCase reason for the last transition.",
    )
    message: str = pydantic.Field(
        default="", max_length=32768, description="Human-readable details of the last transition."
    )
    last_transition_time: str | None = pydantic.Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


class ObservedStatus(ApiModel):
    """What every gpufleet status starts with: the generation reconciled and the
    Ready/Progressing/Degraded conditions, merged by ``type`` under server-side apply."""

    observed_generation: int | None = pydantic.Field(
        default=None, description="metadata.generation last reconciled."
    )
    conditions: tuple[Condition, ...] = pydantic.Field(
        default=(),
        description="Ready, Progressing, Degraded.",
        json_schema_extra=list_map("type"),
    )
