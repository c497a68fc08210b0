"""ModelPool fields and what the operator does with them: ``workloadClass`` sets vLLM's
per-step token budget, and a pool asking for autoscaling is told who sizes its variants by
its ``ScalingActive`` condition."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import conditions
from gpufleet.controller.modelpool import podspec, scalingreport, status, variants
from gpufleet.devcluster import vllmargs
from gpufleet.hardware import catalog
from gpufleet.planning import batching

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def spec(gpu: str = "H100-80GB", **over: Any) -> ModelPoolSpec:
    variant = {"name": "a", "gpu": gpu} | over.pop("variant", {})
    body = {
        "model": {"name": "m", "source": "hf://org/m", "catalogName": "llama-3.1-8b",
                  "maxModelLen": 8192},
        "variants": [variant],
    } | over  # fmt: skip
    return ModelPoolSpec.model_validate(body)


def budget(s: ModelPoolSpec) -> int | None:
    args = podspec.vllm_args(s, variants.plan_pool(s)[0])
    serve = vllmargs.parse(image="vllm/vllm-openai", command=["vllm", "serve"], args=args)
    assert serve is not None
    return serve.max_num_batched_tokens


@pytest.mark.parametrize(
    ("workload", "gpu", "expected"),
    [
        ("interactive", "H100-80GB", 2048),  # below vLLM's 8192 there: smoother ITL
        ("interactive", "L4", 2048),
        ("batch", "H100-80GB", 16384),
        ("batch", "B200", 16384),
        ("batch", "A100-80GB", None),  # vLLM keeps 2048 on A100s: larger measured slower
        ("batch", "L40S", None),
        ("mixed", "H100-80GB", None),
    ],
)
def test_workload_class_sets_the_token_budget(
    workload: str, gpu: str, expected: int | None
) -> None:
    assert budget(spec(gpu, workloadClass=workload)) == expected


def test_default_workload_class_leaves_vllm_defaults_and_extra_args_override() -> None:
    assert spec().workload_class == "mixed" and budget(spec()) is None
    tuned = spec(workloadClass="interactive",
                 variant={"extraArgs": ["--max-num-batched-tokens", "4096"]})  # fmt: skip
    assert budget(tuned) == 4096  # the last value wins, in vLLM as in the twin


def test_vllm_default_budget_follows_vllm() -> None:
    defaults = {g: batching.vllm_default_budget(catalog.get(g)) for g in catalog.GPUS}
    assert defaults["H100-80GB"] == defaults["H200"] == defaults["B200"] == 8192
    assert defaults["A100-80GB"] == defaults["A100-40GB"] == defaults["L4"] == 2048


def compute(s: ModelPoolSpec) -> dict[str, tuple[str, str, str]]:
    seen = status.Observation(generation=1, deployments={}, pods=())
    st = status.compute(s, variants.plan_pool(s), seen, previous=None, now=T0)
    return {c.type: (c.status, c.reason, c.message) for c in st.conditions}


def test_no_scaling_note_when_nothing_asks_for_autoscaling() -> None:
    assert "ScalingActive" not in compute(spec())


def test_replica_range_waits_for_the_autoscalers_first_decision() -> None:
    state, reason, message = compute(spec(variant={"maxReplicas": 4}))["ScalingActive"]
    assert (state, reason) == ("False", "AutoscalerStarting")
    assert "not decided on a yet" in message


def test_autoscaling_targets_alone_get_no_note() -> None:
    assert "ScalingActive" not in compute(spec(autoscaling={"targetKvCacheUsage": 0.5}))


def test_external_mode_says_who_sizes_the_variants() -> None:
    s = spec(variant={"maxReplicas": 4}, autoscaling={"mode": "external"})
    state, reason, message = compute(s)["ScalingActive"]
    assert (state, reason) == ("False", "ExternalAutoscaler") and "HPA/KEDA" in message


def test_the_autoscalers_decision_is_the_status() -> None:
    s = spec(variant={"maxReplicas": 4})
    said = scalingreport.VariantReport(desired=3, reason="up 1 -> 3", last_scale=0.0 + 7)
    report = scalingreport.PoolReport(state="Scaling", summary="grew a", variants={"a": said})
    seen = status.Observation(generation=1, deployments={}, pods=(), scaling=report)
    first = status.compute(s, variants.plan_pool(s), seen, previous=None, now=T0)
    (a,) = first.variants
    assert (a.desired_replicas, a.scaling_reason) == (3, "up 1 -> 3")
    assert a.last_scale_time == "1970-01-01T00:00:07Z"
    by_type = {c.type: c for c in first.conditions}
    assert (by_type["ScalingActive"].status, by_type["ScalingActive"].reason) == (
        "True",
        "Scaling",
    )
    notes = [e for e in conditions.transitions(None, first) if e.reason == "Scaling"]
    assert [e.type for e in notes] == ["Normal"]
    held = dataclasses.replace(report, variants={"a": dataclasses.replace(said, last_scale=None)})
    again = status.compute(
        s, variants.plan_pool(s), dataclasses.replace(seen, scaling=held), previous=first, now=T0
    )
    assert again == first, "a restarted autoscaler keeps the last scale time it wrote"
    assert conditions.transitions(first, again) == []
