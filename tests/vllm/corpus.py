"""Every kind of command line the operator renders for vLLM, as named cases (pure).

Each case is ``controller.modelpool.podspec.vllm_args`` for one ModelPool spec and variant:
the example ModelPools in examples/, then one axis at a time from a base pool —
workload class on every GPU generation, weight dtype, KV-cache dtype, an explicit TP,
each weight source, media domains, trust and prefix caching, extra arguments a user may
add. The contract tests hand them to real vLLM's parser; ``tiny_pool`` is the pool
whose rendered command line real vLLM also runs on CPU (the tiny Llama).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller.modelpool import podspec, variants
from gpufleet.hardware import catalog
from gpufleet.planning import precision

EXAMPLES = Path(__file__).parents[2] / "examples"
Case = tuple[str, list[str]]
BASE_MODEL = {
    "name": "llama-3.1-8b-instruct",
    "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
    "catalogName": "llama-3.1-8b",
    "maxModelLen": 8192,
}


def spec(*, model: dict[str, Any] | None = None, **over: Any) -> ModelPoolSpec:
    body = {
        "model": BASE_MODEL | (model or {}),
        "variants": over.pop("variants", [{"name": "h100", "gpu": "H100-80GB"}]),
    } | over
    return ModelPoolSpec.model_validate(body)


def rendered(name: str, pool: ModelPoolSpec) -> list[Case]:
    """One case per feasible variant of ``pool``."""
    return [
        (f"{name}/{d.name}", podspec.vllm_args(pool, d))
        for d in variants.plan_pool(pool)
        if d.feasible
    ]


def examples() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(EXAMPLES.glob("modelpool-*.yaml")):
        body = yaml.safe_load(path.read_text())
        cases += rendered(path.stem, ModelPoolSpec.model_validate(body["spec"]))
    return cases


def _one_gpu(gpu: str, **extra: Any) -> dict[str, Any]:
    return {"name": gpu.lower().replace("-", ""), "gpu": gpu, **extra}


def axes() -> list[Case]:
    """The base pool varied one setting at a time."""
    pools: dict[str, ModelPoolSpec] = {}
    gpus = [_one_gpu(g) for g in catalog.GPUS]
    for workload in ("interactive", "batch", "mixed"):
        pools[f"workload-{workload}"] = spec(workloadClass=workload, variants=gpus)
    for dtype in precision.WEIGHT_DTYPES:
        for kv in precision.KV_CACHE_DTYPES:
            pools[f"dtype-{dtype}-kv-{kv}"] = spec(model={"dtype": dtype, "kvCacheDtype": kv})
    for tp in (1, 2, 4, 8):
        pools[f"tp-{tp}"] = spec(variants=[_one_gpu("H100-80GB", tensorParallelSize=tp)])
    for source in ("hf://meta-llama/Llama-3.1-8B-Instruct@0e9e39f",
                   "pvc://model-store/llama-3.1-8b", "s3://models/llama-3.1-8b"):  # fmt: skip
        pools[f"source-{source.partition(':')[0]}"] = spec(model={"source": source})
    pools["media-domains"] = spec(serving={"allowedMediaDomains": ["a.example", "b.example"]})
    pools["trust-remote-code"] = spec(serving={"trustRemoteCode": True})
    pools["no-prefix-caching"] = spec(serving={"enablePrefixCaching": False})
    pools["extra-args"] = spec(variants=[_one_gpu("H100-80GB", extraArgs=EXTRA_ARGS)])
    return [case for name, pool in pools.items() for case in rendered(name, pool)]


# Flags a user may add through extraArgs (variants.extra_arg_problems lets them through).
EXTRA_ARGS = ["--enforce-eager", "--scheduling-policy", "priority", "--enable-chunked-prefill",
              "--long-prefill-token-threshold", "512", "--disable-log-stats"]  # fmt: skip


def all_cases() -> list[Case]:
    return examples() + axes()


def tiny_pool(
    *, model: dict[str, Any] | None = None, variant: dict[str, Any] | None = None
) -> ModelPoolSpec:
    """A ModelPool of the tiny Llama (tests/vllm/tinymodel.py), by explicit architecture,
    scheduling by the ``priority`` field (the protocol suite sends one); ``model`` and
    ``variant`` change its fields."""
    architecture = {
        "parameters": 2 * 4096 * 128 + 2 * (4 * 128 * 128 + 3 * 128 * 256),
        "numLayers": 2, "hiddenSize": 128, "numAttentionHeads": 4, "numKvHeads": 4,
        "headDim": 32, "maxContext": 512, "vocabSize": 4096,
    }  # fmt: skip
    base = {"name": "tiny", "source": "pvc://models/tiny-llama", "architecture": architecture,
            "maxModelLen": 512}  # fmt: skip
    one = _one_gpu("L4", extraArgs=["--scheduling-policy", "priority"]) | (variant or {})
    return ModelPoolSpec.model_validate(
        {"model": base | (model or {}), "workloadClass": "interactive", "variants": [one]}
    )


def tiny_args(model_dir: Path, pool: ModelPoolSpec | None = None) -> list[str]:
    """The operator's command line for ``pool`` (by default ``tiny_pool()``), the model
    path pointed at ``model_dir``.

    Only the location changes: the pod would mount the claim at ``podspec.MODELS_DIR``.
    """
    pool = pool or tiny_pool()
    (decision,) = variants.plan_pool(pool)
    args = podspec.vllm_args(pool, decision)
    assert args[0].startswith(podspec.MODELS_DIR), args[0]
    return [str(model_dir), *args[1:]]
