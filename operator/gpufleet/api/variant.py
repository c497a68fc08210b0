"""One variant of a ModelPool: a GPU generation with its own TP, replicas and vLLM settings."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from gpufleet.api import common, vllmflags
from gpufleet.api.common import ApiModel, cel, rules

TP_SIZES = (1, 2, 4, 8)

_TP_RULE = (
    "type(self.tensorParallelSize) == string ? self.tensorParallelSize == 'auto' "
    ": self.tensorParallelSize in [1, 2, 4, 8]"
)
_EXTRA_ARGS_RULE = vllmflags.RULE
_EXTRA_ARGS_MESSAGE = (
    "extraArgs may set only vLLM's tuning flags, spelled in full (_ or -, =value, .key, "
    "--no-), and their values: see docs/operator.md#trust-boundary"
)
_FIRST_ARG_MESSAGE = "extraArgs[0] must be a flag (start with '-'), not a value"


class Variant(ApiModel):
    """One GPU generation serving the pool, with its own TP, replicas and vLLM settings."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                _TP_RULE,
                "tensorParallelSize must be 'auto' or one of 1, 2, 4, 8",
                field_path=".tensorParallelSize",
            ),
            cel(
                "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                field_path=".minReplicas",
            ),
            cel(_EXTRA_ARGS_RULE, _EXTRA_ARGS_MESSAGE, field_path=".extraArgs"),
            cel(
                "size(self.extraArgs) == 0 || self.extraArgs[0].startsWith('-')",
                _FIRST_ARG_MESSAGE,
                field_path=".extraArgs",
            ),
        )
    )

    name: str = pydantic.Field(
        max_length=40,
        pattern=common.DNS_LABEL,
        description="Variant name, unique in the pool (used in child object names).",
    )
    gpu: common.GpuName = pydantic.Field(
        description="Canonical GPU generation the variant runs on."
    )
    quantization: common.WeightDtype | None = pydantic.Field(
        default=None, description="Weight format for this variant; unset = model.dtype."
    )
    tensor_parallel_size: int | Literal["auto"] = pydantic.Field(
        default="auto", description="GPUs per replica: 'auto' (planned) or 1, 2, 4, 8."
    )
    min_replicas: int = pydantic.Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas the operator runs (the floor of an autoscaled variant).",
    )
    max_replicas: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Above minReplicas: the variant is autoscaled, by another controller until "
            "gpufleet's autoscaler is active (see autoscaling.enabled); unset = minReplicas."
        ),
    )
    gpu_memory_utilization: float = pydantic.Field(
        default=0.9,
        ge=0.1,
        le=0.99,
        description="Fraction of GPU memory vLLM may use (--gpu-memory-utilization).",
    )
    max_model_len: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Per-variant --max-model-len; unset = model.maxModelLen.",
    )
    extra_args: tuple[Annotated[str, pydantic.Field(max_length=256)], ...] = pydantic.Field(
        default=(),
        max_length=32,
        description=(
            "Extra vLLM arguments, appended after the operator's: the first must be a flag, "
            "and every flag one of vLLM's tuning flags, spelled in full (docs/operator.md, "
            "Trust boundary, lists them)."
        ),
    )
    cost_per_gpu_hour: float | None = pydantic.Field(
        default=None,
        ge=0,
        le=10000,
        description=(
            "Price of one GPU-hour of this generation. The operator publishes it on the "
            "variant's pods (annotation, no restart) and the router's cost scorer "
            "(scorerWeights.cost) reads it from there."
        ),
    )
    capacity_type: Literal["on-demand", "spot"] = pydantic.Field(
        default="on-demand",
        description=(
            "spot: the variant runs on interruptible capacity (say so to the scheduler with "
            "placement). Its pods are labelled gpufleet.io/capacity-type=spot; routers "
            "prefer them for request classes with preferSpot (batch by default)."
        ),
    )

    @pydantic.field_validator("tensor_parallel_size")
    @classmethod
    def _tp_size(cls, value: int | str) -> int | str:
        if value != "auto" and value not in TP_SIZES:
            raise ValueError("tensorParallelSize must be 'auto' or one of 1, 2, 4, 8")
        return value

    @pydantic.field_validator("extra_args")
    @classmethod
    def _not_owned(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and not value[0].startswith("-"):
            raise ValueError(f"{_FIRST_ARG_MESSAGE} (got {value[0][:64]!r})")
        for i, arg in enumerate(value):
            why = vllmflags.problem(arg)
            if why is not None:
                raise ValueError(f"extraArgs[{i}] {arg[:64]!r} {why}")
        return value

    @pydantic.model_validator(mode="after")
    def _replica_range(self) -> Variant:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        return self
