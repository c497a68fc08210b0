"""Planning every variant of a ModelPool, and the specs no reconcile can ever satisfy.

Pure. ``plan_pool`` runs the planner (``gpufleet.planning``) once per variant with the
variant's own dtype, TP, context and memory settings; ``spec_problems`` lists what makes
a schema-valid spec impossible to realise (names the API server would reject on the
children) or what the operator will not run for it (the trust boundary: an image outside
its allowed prefixes, model code it does not allow, an extra argument that is not one of
vLLM's tuning flags), each naming the field at fault.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from gpufleet.api import vllmflags
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.api.modelsource import ModelSpec
from gpufleet.api.variant import Variant
from gpufleet.controller import images
from gpufleet.hardware import catalog
from gpufleet.labels import deployment_name
from gpufleet.operatorconfig import OperatorConfig
from gpufleet.planning import customarch, models, planner

# Service names are DNS-1035 labels; label values (gpufleet.io/pool) are at most 63.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63
# Where a pool asks for what an extra argument may not set.
_FIELD_FOR = {
    "--trust-remote-code": "spec.serving.trustRemoteCode",
    "--allowed-media-domains": "spec.serving.allowedMediaDomains",
    "--enable-prefix-caching": "spec.serving.enablePrefixCaching",
    "--max-num-seqs": "spec.serving.maxNumSeqs",
    "--port": "spec.serving.port",
    "--max-model-len": "maxModelLen",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--tensor-parallel-size": "tensorParallelSize",
    "--quantization": "quantization",
    "--dtype": "spec.model.dtype",
    "--kv-cache-dtype": "spec.model.kvCacheDtype",
}


@dataclasses.dataclass(frozen=True, slots=True)
class VariantDecision:
    """One variant with its GPU generation and the planner's verdict."""

    variant: Variant
    gpu: catalog.GpuSpec
    plan: planner.VariantPlan
    dtype: str

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def feasible(self) -> bool:
        return self.plan.feasible


def model_arch(model: ModelSpec) -> models.ModelArch:
    """The planner's view of the pool's model: the catalog entry or the explicit numbers."""
    if model.catalog_name is not None:
        return models.get(model.catalog_name)
    arch = model.architecture
    if arch is None:  # the API's validators make this unreachable
        raise ValueError("model: exactly one of catalogName and architecture must be set")
    return customarch.from_architecture(arch, model.name)


def plan_pool(
    spec: ModelPoolSpec, *, gpus_per_node: Mapping[str, int] | None = None
) -> tuple[VariantDecision, ...]:
    """The planner's decision for every variant, in spec order; ``gpus_per_node`` is the
    node shape of each generation seen (else the catalog's largest node)."""
    arch = model_arch(spec.model)
    shapes = gpus_per_node or {}
    return tuple(_decide(spec, arch, v, shapes.get(v.gpu)) for v in spec.variants)


def _decide(
    spec: ModelPoolSpec, arch: models.ModelArch, variant: Variant, gpus_per_node: int | None
) -> VariantDecision:
    gpu = catalog.get(variant.gpu)
    dtype = variant.quantization or spec.model.dtype
    tp = variant.tensor_parallel_size
    plan = planner.plan_variant(
        arch,
        gpu,
        dtype=dtype,
        kv_cache_dtype=spec.model.kv_cache_dtype,
        tensor_parallel_size=None if tp == "auto" else tp,
        max_model_len=variant.max_model_len or spec.model.max_model_len,
        gpu_memory_utilization=variant.gpu_memory_utilization,
        min_sequences=spec.serving.min_full_length_sequences,
        gpus_per_node=gpus_per_node or None,
    )
    return VariantDecision(variant=variant, gpu=gpu, plan=plan, dtype=dtype)


def spec_problems(pool: str, spec: ModelPoolSpec, *, config: OperatorConfig) -> tuple[str, ...]:
    """Why no reconcile can realise this pool, or the operator will not; empty when it can.

    The pool's name becomes a Service name (a DNS-1035 label) and a label value, and
    each ``<pool>-<variant>`` a Deployment name whose pods carry it in labels: all at
    most 63 characters. ``config`` draws the trust boundary.
    """
    problems = [*_name_problems(pool, spec), *trust_problems(spec, config=config)]
    return tuple(problems)


def trust_problems(spec: ModelPoolSpec, *, config: OperatorConfig) -> list[str]:
    """What the pool asks for beyond what a ModelPool author may have (docs/operator.md)."""
    problems: list[str] = []
    image = spec.serving.image
    if not images.allowed(image, config.allowed_image_prefixes):
        allowed = ", ".join(config.allowed_image_prefixes) or "none"
        problems.append(
            f"spec.serving.image {image!r} is not under the operator's allowed image "
            f"prefixes ({allowed}); use an image from one of them, or ask the operator's "
            "administrator to allow it (--allowed-image-prefix)"
        )
    if spec.serving.trust_remote_code and not config.allow_trust_remote_code:
        problems.append(
            "spec.serving.trustRemoteCode: this operator does not run code from model "
            "repositories (--allow-trust-remote-code is off); set it to false"
        )
    for variant in spec.variants:
        problems += extra_arg_problems(variant)
    return problems


def extra_arg_problems(variant: Variant) -> list[str]:
    """Each extra argument that is not a tuning flag (or its value), naming its index and,
    for a flag the operator sets or gates, the field to set instead."""
    where = f"spec.variants[{variant.name}].extraArgs"
    args = variant.extra_args
    problems: list[str] = []
    if args and not args[0].startswith("-"):
        problems.append(f"{where}[0] {args[0][:64]!r} must be a flag (start with '-')")
    for i, arg in enumerate(args):
        why = vllmflags.problem(arg)
        if why is None:
            continue
        instead = _FIELD_FOR.get(vllmflags.refused(arg) or "")
        hint = f"; set {instead} instead" if instead else ""
        problems.append(f"{where}[{i}] {arg[:64]!r} {why}{hint}")
    return problems


def _name_problems(pool: str, spec: ModelPoolSpec) -> list[str]:
    problems: list[str] = []
    if len(pool) > MAX_LABEL or not _DNS_1035.match(pool):
        problems.append(
            f"metadata.name {pool!r} must be a DNS-1035 label (lowercase letters, digits and "
            f"'-', starting with a letter, at most {MAX_LABEL} characters): it names the "
            "pool's Service"
        )
    for variant in spec.variants:
        name = deployment_name(pool, variant.name)
        if len(name) > MAX_LABEL:
            problems.append(
                f"spec.variants[{variant.name}].name: Deployment name {name!r} is "
                f"{len(name)} characters, over the {MAX_LABEL} allowed; shorten metadata.name "
                "or the variant name"
            )
    return problems
