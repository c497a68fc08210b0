"""How the router runs: failure handling, its metrics source and its Deployment's shape
(parts of the RoutingPolicy spec).
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from gpufleet.api import common
from gpufleet.api.common import ApiModel, cel, rules
from gpufleet.hardware import dcgm

MetricName = Annotated[
    str, pydantic.Field(min_length=1, max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
]


class Retries(ApiModel):
    """Retries, only ever before the first response byte reached the client."""

    max_retries: int = pydantic.Field(
        default=2, ge=0, le=10, description="Attempts after the first."
    )
    backoff_millis: int = pydantic.Field(
        default=100, ge=0, le=60000, description="Delay before a retry."
    )
    on_status: tuple[Annotated[int, pydantic.Field(ge=500, le=599)], ...] = pydantic.Field(
        default=(500, 502, 503, 504),
        max_length=16,
        description="Upstream statuses retried on another endpoint (5xx only; 4xx never).",
    )


class CircuitBreaker(ApiModel):
    """Stop sending to an endpoint after consecutive failures."""

    consecutive_failures: int = pydantic.Field(
        default=5, ge=1, le=1000, description="Failures that open the circuit."
    )
    open_seconds: int = pydantic.Field(
        default=30, ge=1, le=3600, description="How long it stays open."
    )
    half_open_requests: int = pydantic.Field(
        default=1, ge=1, le=100, description="Trial requests when half open."
    )


class FailureHandling(ApiModel):
    """Timeouts, retries, circuit breaking and the fallback model.

    Four timeouts, each on its own clock: connect and first byte per attempt (both
    retried on another endpoint and counted against the endpoint's breaker), chunk idle
    within a stream, and the whole request across all of them.
    """

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.connectTimeoutSeconds <= self.requestTimeoutSeconds",
                "connectTimeoutSeconds must not exceed requestTimeoutSeconds",
                field_path=".connectTimeoutSeconds",
            )
        )
    )

    connect_timeout_seconds: int = pydantic.Field(
        default=5,
        ge=1,
        le=600,
        description=(
            "One TCP connect to an endpoint; on expiry the next endpoint is tried, "
            "504 when none is left."
        ),
    )
    first_byte_timeout_seconds: int = pydantic.Field(
        default=120,
        ge=1,
        le=3600,
        description=(
            "One attempt, until the first chunk of a stream or the whole body of an answer "
            "that is not streamed (the engine's queueing and prefill); on expiry the next "
            "endpoint is tried, 504 when none is left."
        ),
    )
    request_timeout_seconds: int = pydantic.Field(
        default=600,
        ge=1,
        le=86400,
        description=(
            "The whole request once forwarded: admission queue, every attempt and retry, "
            "and a stream to its end. Before the first byte: 504, not retried; after it "
            "the stream ends with an error event. Charged to no endpoint's breaker."
        ),
    )
    chunk_idle_timeout_seconds: int = pydantic.Field(
        default=30,
        ge=1,
        le=3600,
        description=(
            "Longest silence between two streamed chunks; the stream then ends with an error event."
        ),
    )
    retries: Retries = pydantic.Field(
        default_factory=Retries,
        description="Retry policy.",
        json_schema_extra=common.object_default(Retries),
    )
    circuit_breaker: CircuitBreaker = pydantic.Field(
        default_factory=CircuitBreaker,
        description="Circuit breaker.",
        json_schema_extra=common.object_default(CircuitBreaker),
    )
    fallback_model: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Served model to try when the requested one has no capacity.",
    )

    @pydantic.model_validator(mode="after")
    def _timeouts(self) -> FailureHandling:
        if self.connect_timeout_seconds > self.request_timeout_seconds:
            raise ValueError("connectTimeoutSeconds must not exceed requestTimeoutSeconds")
        return self


class MetricNames(ApiModel):
    """Prometheus metric names read by the router, overridable since vLLM renamed some.

    Defaults: vLLM's production metrics (docs.vllm.ai, "Production Metrics") and DCGM
    exporter's default counters (NVIDIA/dcgm-exporter, default-counters.csv). vLLM V1
    renamed ``vllm:gpu_cache_usage_perc`` to ``vllm:kv_cache_usage_perc``; the default
    is the current name, older engines need the override.
    """

    requests_running: MetricName = pydantic.Field(
        default="vllm:num_requests_running", description="Running requests."
    )
    requests_waiting: MetricName = pydantic.Field(
        default="vllm:num_requests_waiting", description="Queued requests."
    )
    kv_cache_usage: MetricName = pydantic.Field(
        default="vllm:kv_cache_usage_perc",
        description="KV-cache usage, 0-1 (vLLM before V1: vllm:gpu_cache_usage_perc).",
    )
    prompt_tokens: MetricName = pydantic.Field(
        default="vllm:prompt_tokens_total", description="Prefill tokens counter."
    )
    generation_tokens: MetricName = pydantic.Field(
        default="vllm:generation_tokens_total", description="Generated tokens counter."
    )
    time_to_first_token: MetricName = pydantic.Field(
        default="vllm:time_to_first_token_seconds", description="TTFT histogram."
    )
    gpu_memory_used: MetricName = pydantic.Field(
        default=dcgm.FB_USED.name, description="GPU memory used, MiB."
    )
    gpu_memory_free: MetricName = pydantic.Field(
        default=dcgm.FB_FREE.name, description="GPU memory free, MiB."
    )
    gpu_utilization: MetricName = pydantic.Field(
        default=dcgm.GPU_UTIL.name, description="GPU utilization, %."
    )


class PrometheusTls(ApiModel):
    """How the router verifies Prometheus's certificate (https URLs)."""

    ca_config_map_ref: common.ConfigMapKeyRef | None = pydantic.Field(
        default=None,
        description="PEM CA bundle that signed Prometheus's certificate; unset = system CAs.",
    )
    insecure_skip_verify: bool = pydantic.Field(
        default=False, description="Do not verify the certificate (testing only)."
    )


# http or https, a host (name, IPv4 or [IPv6]) and optional port, then an optional
# path: no user information, query or fragment — the router only ever appends
# Prometheus's API paths to it.
PROMETHEUS_URL = r"^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[-A-Za-z0-9._~/%]*)?$"


class PrometheusSource(ApiModel):
    """Where the router reads GPU and vLLM metrics. The router, never the operator,
    connects to it."""

    url: str = pydantic.Field(
        max_length=2048,
        pattern=PROMETHEUS_URL,
        description="Prometheus base URL: http(s)://host[:port][/path], no credentials or query.",
    )
    tls: PrometheusTls = pydantic.Field(
        default_factory=PrometheusTls,
        description="Certificate verification for https URLs (verified by default).",
        json_schema_extra=common.object_default(PrometheusTls),
    )
    refresh_interval_seconds: float = pydantic.Field(
        default=5.0, ge=0.5, le=300, description="How often metrics are re-read."
    )
    staleness_seconds: float = pydantic.Field(
        default=30.0, ge=1, le=3600, description="Older samples are ignored."
    )
    metric_names: MetricNames = pydantic.Field(
        default_factory=MetricNames,
        description="Metric-name overrides.",
        json_schema_extra=common.object_default(MetricNames),
    )


class ResourceList(ApiModel):
    """CPU and memory quantities."""

    cpu: str | None = pydantic.Field(
        default=None, max_length=32, pattern=common.QUANTITY, description="CPU quantity."
    )
    memory: str | None = pydantic.Field(
        default=None, max_length=32, pattern=common.QUANTITY, description="Memory quantity."
    )


class Resources(ApiModel):
    """Requests and limits of the router container."""

    requests: ResourceList = pydantic.Field(
        default_factory=ResourceList, description="Resource requests."
    )
    limits: ResourceList = pydantic.Field(
        default_factory=ResourceList, description="Resource limits."
    )


class Router(ApiModel):
    """The router the operator runs for this policy."""

    mode: Literal["deployment", "sidecar"] = pydantic.Field(
        default="deployment",
        description=(
            "deployment: the operator runs the router as a Deployment with a Service; "
            "sidecar: it renders only the router's configuration and account, for a "
            "router container added to an application's pods (docs/router.md)."
        ),
    )
    replicas: int = pydantic.Field(default=2, ge=1, le=100, description="Router replicas.")
    image: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Router image; unset = the operator's own image.",
    )
    port: int = pydantic.Field(
        default=8080, ge=1, le=65535, description="Port of the router Service."
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = pydantic.Field(
        default="ClusterIP", description="Type of the router Service."
    )
    resources: Resources = pydantic.Field(
        default_factory=Resources, description="Router container resources."
    )
