"""Invalid ModelPool and RoutingPolicy objects, shared by the pydantic unit tests and the
API-server integration tests: both must reject each one naming ``field``."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

DELETE = object()


def modelpool(name: str = "pool") -> dict[str, Any]:
    """A valid ModelPool with two variants."""
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "llama-3.1-8b",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "catalogName": "llama-3.1-8b",
            },
            "variants": [
                {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 2},
                {"name": "l4", "gpu": "L4", "tensorParallelSize": 1},
            ],
        },
    }


def routingpolicy(name: str = "policy") -> dict[str, Any]:
    """A valid RoutingPolicy."""
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": name},
        "spec": {"pools": ["pool"]},
    }


@dataclasses.dataclass(frozen=True)
class Case:
    """An invalid object and the field its rejection must name."""

    id: str
    body: dict[str, Any]
    field: str


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is DELETE:
        del node[leaf]
    elif leaf.isdigit():
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return out


def _mp(case_id: str, field: str, *changes: tuple[str, Any]) -> Case:
    body = modelpool()
    for path, value in changes:
        body = _set(body, path, value)
    return Case(f"modelpool-{case_id}", body, field)


def _rp(case_id: str, field: str, *changes: tuple[str, Any]) -> Case:
    body = routingpolicy()
    for path, value in changes:
        body = _set(body, path, value)
    return Case(f"routingpolicy-{case_id}", body, field)


_H100 = {"name": "other", "gpu": "H100-80GB"}
_TOKEN_METHOD = "spec.tokenEstimation.method"  # removed: characters / charsPerToken only

INVALID: tuple[Case, ...] = (
    _mp("no-variants", "variants", ("spec.variants", [])),
    _mp("tp-3", "tensorParallelSize", ("spec.variants.0.tensorParallelSize", 3)),
    _mp("tp-16", "tensorParallelSize", ("spec.variants.0.tensorParallelSize", 16)),
    _mp("tp-word", "tensorParallelSize", ("spec.variants.0.tensorParallelSize", "four")),
    _mp("min-over-max", "minReplicas", ("spec.variants.0.minReplicas", 3)),
    _mp("negative-min", "minReplicas", ("spec.variants.1.minReplicas", -1)),
    _mp("same-gpu-and-quant", "variants", ("spec.variants.1", _H100)),
    _mp("duplicate-name", "variants", ("spec.variants.1.name", "h100")),
    _mp("unknown-gpu", "gpu", ("spec.variants.0.gpu", "H100")),
    _mp("utilization", "gpuMemoryUtilization", ("spec.variants.0.gpuMemoryUtilization", 1.5)),
    _mp("owned-flag", "extraArgs", ("spec.variants.0.extraArgs", ["--tensor-parallel-size=2"])),
    _mp("untuning-flag", "extraArgs", ("spec.variants.0.extraArgs", ["--kv-events-config={}"])),
    _mp("abbreviated-flag", "extraArgs", ("spec.variants.0.extraArgs", ["--tensor-par", "2"])),
    _mp("old-vllm", "image", ("spec.serving.image", "vllm/vllm-openai:v0.14.0")),
    _mp(
        "media-ip",
        "allowedMediaDomains",
        ("spec.serving.allowedMediaDomains", ["example.com", "169.254.169.254"]),
    ),
    _mp(
        "media-svc",
        "allowedMediaDomains",
        ("spec.serving.allowedMediaDomains", ["prometheus.monitoring.svc.cluster.local"]),
    ),
    _mp(
        "media-localhost",
        "allowedMediaDomains",
        ("spec.serving.allowedMediaDomains", ["localhost"]),
    ),
    _mp("quantization", "quantization", ("spec.variants.0.quantization", "int3")),
    _mp("no-architecture", "catalogName", ("spec.model.catalogName", DELETE)),
    _mp(
        "both-architectures",
        "catalogName",
        (
            "spec.model.architecture",
            {
                "parameters": 8_000_000_000,
                "numLayers": 32,
                "hiddenSize": 4096,
                "numAttentionHeads": 32,
                "numKvHeads": 8,
                "headDim": 128,
                "maxContext": 8192,
            },
        ),
    ),
    _mp(
        "kv-heads",
        "numKvHeads",
        ("spec.model.catalogName", DELETE),
        (
            "spec.model.architecture",
            {
                "parameters": 8_000_000_000,
                "numLayers": 32,
                "hiddenSize": 4096,
                "numAttentionHeads": 32,
                "numKvHeads": 5,
                "headDim": 128,
                "maxContext": 8192,
            },
        ),
    ),
    _mp(
        "max-model-len-over-context",
        "maxModelLen",
        ("spec.model.catalogName", DELETE),
        ("spec.model.maxModelLen", 16384),
        (
            "spec.model.architecture",
            {
                "parameters": 8_000_000_000,
                "numLayers": 32,
                "hiddenSize": 4096,
                "numAttentionHeads": 32,
                "numKvHeads": 8,
                "headDim": 128,
                "maxContext": 8192,
            },
        ),
    ),
    _mp("source-scheme", "source", ("spec.model.source", "http://example.com/model")),
    _mp("unknown-catalog-model", "catalogName", ("spec.model.catalogName", "gpt-5")),
    _mp("dtype", "dtype", ("spec.model.dtype", "int3")),
    _mp("unknown-field", "replicas", ("spec.replicas", 3)),
    _mp(
        "toleration-exists-value",
        "value",
        ("spec.placement.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
    ),
    _mp(
        "stabilization",
        "scaleUpStabilizationSeconds",
        ("spec.autoscaling.scaleUpStabilizationSeconds", 900),
    ),
    _mp("kv-usage", "targetKvCacheUsage", ("spec.autoscaling.targetKvCacheUsage", 2)),
    _mp("workload-class", "workloadClass", ("spec.workloadClass", "realtime")),
    _rp("no-target", "pools", ("spec.pools", DELETE)),
    _rp("two-targets", "pools", ("spec.poolSelector", {"matchLabels": {"a": "b"}})),
    _rp("strategy", "strategy", ("spec.strategy", "random")),
    _rp(
        "objective-needs-cost",
        "objective",
        ("spec.strategy", "least-request"),
        ("spec.objective", "cost"),
    ),
    _rp("default-class", "defaultClass", ("spec.defaultClass", "premium")),
    _rp(
        "pressure-over-absolute",
        "inputTokens",
        ("spec.largeRequests.memoryPressure", {"inputTokens": 9000}),
    ),
    _rp("large-zero", "inputTokens", ("spec.largeRequests.inputTokens", 0)),
    _rp("keys-without-tenants", "tenants", ("spec.admission.requireApiKey", True)),
    _rp(
        "tenant-class",
        "defaultClass",
        (
            "spec.admission.tenants",
            [{"name": "t", "apiKeySecretRef": {"name": "s"}, "defaultClass": "premium"}],
        ),
    ),
    _rp("allowed-classes", "allowedClasses", ("spec.admission.allowedClasses", ["premium"])),
    _rp(
        "tenant-allowed-classes",
        "allowedClasses",
        (
            "spec.admission.tenants",
            [{"name": "t", "apiKeySecretRef": {"name": "s"}, "allowedClasses": ["premium"]}],
        ),
    ),
    _rp("weights-key", "overrides", ("spec.generationWeights.overrides", {"H100": 1.5})),
    _rp("token-method-removed", "method", (_TOKEN_METHOD, "heuristic")),
    _rp(
        "timeouts",
        "connectTimeoutSeconds",
        ("spec.failureHandling.connectTimeoutSeconds", 60),
        ("spec.failureHandling.requestTimeoutSeconds", 30),
    ),
    _rp("prometheus-url", "url", ("spec.prometheus", {"url": "prometheus:9090"})),
    _rp(
        "zero-weights",
        "scorerWeights",
        (
            "spec.scorerWeights",
            dict.fromkeys(
                (
                    "load",
                    "kvCache",
                    "queue",
                    "prefixAffinity",
                    "sessionAffinity",
                    "classPreference",
                ),
                0,
            ),
        ),
    ),
    _rp("router-replicas", "replicas", ("spec.router.replicas", 0)),
    _rp("cpu-quantity", "cpu", ("spec.router.resources", {"requests": {"cpu": "lots"}})),
    _rp(
        "metric-name",
        "kvCacheUsage",
        ("spec.prometheus", {"url": "http://p:9090", "metricNames": {"kvCacheUsage": "a b"}}),
    ),
    _rp("retry-status", "onStatus", ("spec.failureHandling.retries", {"onStatus": [200]})),
    _rp("session-header", "header", ("spec.affinity.session", {"header": "x session"})),
    _rp("spillover-gpu", "generations", ("spec.spillover.tiers", [{"generations": ["H100"]}])),
    _rp(
        "spillover-repeat",
        "generations",
        ("spec.spillover.tiers", [{"generations": ["H200", "H200"]}]),
    ),
    _rp(
        "spillover-two-tiers",
        "tiers",
        ("spec.spillover.tiers", [{"generations": ["H200"]}, {"generations": ["B200", "H200"]}]),
    ),
    _rp(
        "spillover-saturation",
        "saturationPercent",
        ("spec.spillover.tiers", [{"generations": ["H200"], "saturationPercent": 0}]),
    ),
    _rp("spillover-empty-tier", "generations", ("spec.spillover.tiers", [{"generations": []}])),
)
