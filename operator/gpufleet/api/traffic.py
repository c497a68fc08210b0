"""How the router treats traffic: scoring weights, generation weights, token estimation,
request classes, large requests and affinity (parts of the RoutingPolicy spec).
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from gpufleet.api import common
from gpufleet.api.common import ApiModel, cel, rules

ClassName = Annotated[str, pydantic.Field(max_length=63, pattern=common.DNS_LABEL)]
HeaderName = Annotated[
    str, pydantic.Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")
]
MetricName = Annotated[
    str, pydantic.Field(min_length=1, max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
]
Weight = Annotated[float, pydantic.Field(ge=0, le=100)]


class ModelAlias(ApiModel):
    """Another name clients may use for a served model."""

    name: str = pydantic.Field(min_length=1, max_length=128, description="The name clients send.")
    model: str = pydantic.Field(
        min_length=1, max_length=128, description="The served model it maps to."
    )


class ScorerWeights(ApiModel):
    """Weights of the cost strategy's scorers; each scorer yields [0, 1]."""

    load: Weight = pydantic.Field(
        default=1.0, description="Pending token load divided by the generation's throughput weight."
    )
    kv_cache: Weight = pydantic.Field(default=1.0, description="KV-cache headroom from metrics.")
    queue: Weight = pydantic.Field(
        default=1.0, description="Requests waiting in the endpoint's queue."
    )
    prefix_affinity: Weight = pydantic.Field(
        default=1.0, description="Endpoint likely to hold the prompt prefix in its cache."
    )
    session_affinity: Weight = pydantic.Field(
        default=1.0, description="Endpoint that served the session before."
    )
    cost: Weight = pydantic.Field(
        default=0.0,
        description=(
            "Price per token of the endpoint's GPUs (price per GPU-hour x TP / predicted "
            "throughput), cheapest = 1."
        ),
    )
    class_preference: Weight = pydantic.Field(
        default=1.0,
        description="Endpoint's generation among the request class's preferred generations.",
    )


class GenerationWeights(ApiModel):
    """Relative throughput of each GPU generation (A100-80GB = 1.0)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                f"self.overrides.all(g, g in {list(common.GPU_NAMES)})",
                "overrides keys must be GPU generations: " + ", ".join(common.GPU_NAMES),
                field_path=".overrides",
            )
        )
    )

    mode: Literal["catalog", "auto"] = pydantic.Field(
        default="auto",
        description=(
            "auto: start from the catalog's measured figures (or overrides) and re-weight "
            "each endpoint by its observed speed; catalog: the figures only, never learned."
        ),
    )
    overrides: dict[str, float] = pydantic.Field(
        default_factory=dict,
        max_length=16,
        description="Weight per generation replacing the catalog's (also where auto starts).",
    )
    learning_half_life_seconds: int = pydantic.Field(
        default=15,
        ge=10,
        le=86400,
        description=(
            "auto: half-life of each endpoint's rate average; a change of speed is "
            "re-weighted within about four half-lives."
        ),
    )
    min_samples: int = pydantic.Field(
        default=20,
        ge=1,
        le=100000,
        description="auto: completed requests before a learned weight is used.",
    )

    @pydantic.field_validator("overrides")
    @classmethod
    def _known_generations(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(common.GPU_NAMES))
        if unknown:
            raise ValueError(f"overrides keys must be GPU generations, got {unknown}")
        if any(w <= 0 for w in value.values()):
            raise ValueError("overrides weights must be positive")
        return value


class TokenEstimation(ApiModel):
    """How the router estimates a request's tokens before it runs: characters divided by
    ``charsPerToken`` (the router loads no tokenizer: it routes before the engine
    tokenizes, and an estimate serves load balancing as well as an exact count)."""

    chars_per_token: float = pydantic.Field(
        default=4.0, ge=0.5, le=16, description="Prompt characters per input token."
    )
    default_max_tokens: int = pydantic.Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Output tokens assumed when a request sets no max_tokens.",
    )
    expected_output_fraction: float = pydantic.Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of max_tokens expected to be generated (1 = worst case).",
    )


class Slo(ApiModel):
    """Latency objectives of a request class (p90). With ``objective: cost`` a request
    goes to the cheapest endpoint predicted to meet every bound set."""

    ttft_millis: int | None = pydantic.Field(
        default=None, ge=1, le=3_600_000, description="Time to first token."
    )
    tpot_millis: int | None = pydantic.Field(
        default=None, ge=1, le=60_000, description="Time per output token."
    )
    end_to_end_seconds: int | None = pydantic.Field(
        default=None, ge=1, le=86400, description="Whole request."
    )


class RequestClass(ApiModel):
    """A class of requests (chosen by header or tenant) with its priority and SLOs."""

    name: ClassName = pydantic.Field(description="Class name, sent in the class header.")
    priority: int = pydantic.Field(
        default=0, ge=0, le=1000, description="Higher is admitted and served first."
    )
    slo: Slo = pydantic.Field(
        default_factory=Slo,
        description="Latency objectives (p90): objective cost routes to meet them.",
        json_schema_extra=common.object_default(Slo),
    )
    preferred_generations: tuple[common.GpuName, ...] = pydantic.Field(
        default=(), max_length=8, description="Generations to send this class to first, in order."
    )
    prefer_spot: bool = pydantic.Field(
        default=False,
        description=(
            "Send this class to endpoints of spot variants (capacityType: spot) whenever one "
            "has room, within the spillover tier that serves: work that tolerates a retry "
            "on cheaper, interruptible capacity."
        ),
    )
    max_input_tokens: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Larger inputs are rejected with 400 for this class.",
    )


class MemoryPressureTrigger(ApiModel):
    """Large-request trigger that applies only while GPU memory is under pressure."""

    gpu_memory_percent: int = pydantic.Field(
        default=85, ge=1, le=100, description="GPU memory used (%) on the candidate endpoint."
    )
    input_tokens: int = pydantic.Field(
        default=4000,
        ge=1,
        le=10_000_000,
        description="Pressure plus input above this many tokens is large.",
    )
    predicted_kv_mb: int = pydantic.Field(
        default=3000,
        ge=1,
        le=10_000_000,
        description="Pressure plus predicted KV cache above this many MB is large.",
    )


class LargeRequests(ApiModel):
    """When a request counts as large, and where large requests go."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.memoryPressure.inputTokens <= self.inputTokens",
                "memoryPressure.inputTokens must not exceed inputTokens",
                field_path=".memoryPressure.inputTokens",
            ),
            cel(
                "self.memoryPressure.predictedKvMb <= self.predictedKvMb",
                "memoryPressure.predictedKvMb must not exceed predictedKvMb",
                field_path=".memoryPressure.predictedKvMb",
            ),
        )
    )

    enabled: bool = pydantic.Field(default=True, description="Treat large requests specially.")
    input_tokens: int = pydantic.Field(
        default=8000, ge=1, le=10_000_000, description="Input above this is large."
    )
    predicted_kv_mb: int = pydantic.Field(
        default=6000,
        ge=1,
        le=10_000_000,
        description="Predicted KV cache above this many MB is large.",
    )
    memory_pressure: MemoryPressureTrigger = pydantic.Field(
        default_factory=MemoryPressureTrigger,
        description="Lower thresholds that apply while GPU memory is under pressure.",
        json_schema_extra=common.object_default(MemoryPressureTrigger),
    )
    preferred_generations: tuple[common.GpuName, ...] = pydantic.Field(
        default=("B200", "H200", "H100-80GB", "A100-80GB"),
        max_length=8,
        description="Generations large requests go to, best first.",
    )
    placement: Literal["prefer", "require"] = pydantic.Field(
        default="prefer",
        description="prefer: fall back to others when none is free; require: wait or reject.",
    )

    @pydantic.model_validator(mode="after")
    def _pressure_below_absolute(self) -> LargeRequests:
        if self.memory_pressure.input_tokens > self.input_tokens:
            raise ValueError("memoryPressure.inputTokens must not exceed inputTokens")
        if self.memory_pressure.predicted_kv_mb > self.predicted_kv_mb:
            raise ValueError("memoryPressure.predictedKvMb must not exceed predictedKvMb")
        return self


class PrefixAffinity(ApiModel):
    """Send requests sharing a prompt prefix to the same endpoint (its prefix cache)."""

    enabled: bool = pydantic.Field(default=True, description="Use prefix affinity.")
    prefix_chars: int = pydantic.Field(
        default=512, ge=16, le=1_000_000, description="Leading prompt characters hashed."
    )
    max_load_ratio: float = pydantic.Field(
        default=1.5,
        ge=1,
        le=100,
        description="Ignore affinity when the endpoint's load exceeds the mean by this factor.",
    )


class SessionAffinity(ApiModel):
    """Keep a session on the endpoint that served it before."""

    enabled: bool = pydantic.Field(default=True, description="Use session affinity.")
    header: HeaderName = pydantic.Field(
        default="x-session-id", description="Header carrying the session id."
    )
    ttl_seconds: int = pydantic.Field(
        default=600, ge=1, le=86400, description="How long a session is remembered."
    )


class Affinity(ApiModel):
    """Prefix and session affinity."""

    prefix: PrefixAffinity = pydantic.Field(
        default_factory=PrefixAffinity,
        description="Prefix affinity.",
        json_schema_extra=common.object_default(PrefixAffinity),
    )
    session: SessionAffinity = pydantic.Field(
        default_factory=SessionAffinity,
        description="Session affinity.",
        json_schema_extra=common.object_default(SessionAffinity),
    )
