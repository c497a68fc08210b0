"""The planner against published reference points and its own contract."""

from __future__ import annotations

import pytest

from gpufleet.hardware import catalog
from gpufleet.planning import models, plan_variant, planner

GIB = 1024**3


@pytest.mark.parametrize(
    ("model", "gpu", "kwargs", "expected_tp"),
    [
        # Reference points of the issue.
        ("llama-3.1-8b", "A100-40GB", {}, 1),
        ("llama-3.1-70b", "H100-80GB", {"tensor_parallel_size": 1}, None),
        ("llama-3.1-70b", "H200", {}, 2),
        ("llama-3.1-405b", "H100-80GB", {}, None),
        ("llama-3.1-405b", "H200", {}, 8),
        # Widely deployed configurations.
        ("llama-3.2-1b", "L4", {}, 1),
        ("llama-3.1-8b", "L4", {"max_model_len": 8192}, 1),
        ("llama-3.1-70b", "A100-80GB", {"max_model_len": 8192}, 2),
        ("llama-3.1-70b", "H100-80GB", {"max_model_len": 8192}, 2),
        # fp8 70B on one H100 leaves ~2 GB of KV cache: too little for 8k, enough for 4k
        # at a higher utilization.
        ("llama-3.1-70b", "H100-80GB", {"dtype": "fp8", "max_model_len": 8192}, 2),
        (
            "llama-3.1-70b",
            "H100-80GB",
            {"dtype": "fp8", "max_model_len": 4096, "gpu_memory_utilization": 0.95},
            1,
        ),
        ("llama-3.1-70b", "A100-80GB", {"dtype": "awq", "max_model_len": 8192}, 1),
        ("llama-3.1-70b", "L40S", {"dtype": "awq", "max_model_len": 8192}, 2),
        ("llama-3.1-405b", "H100-80GB", {"dtype": "fp8", "max_model_len": 8192}, 8),
        ("mixtral-8x7b", "A100-80GB", {}, 2),
        ("mixtral-8x22b", "H100-80GB", {"max_model_len": 16384}, 4),
        ("qwen2.5-72b", "H200", {}, 2),
        ("qwen2.5-7b", "A10G", {"max_model_len": 4096}, 1),
    ],
)
def test_reference_points(
    model: str, gpu: str, kwargs: dict[str, object], expected_tp: int | None
) -> None:
    plan = plan_variant(models.get(model), catalog.get(gpu), **kwargs)  # type: ignore[arg-type]
    assert plan.tensor_parallel_size == expected_tp, plan.reason
    assert plan.feasible is (expected_tp is not None)
    if plan.feasible:
        assert plan.kv_cache_tokens >= plan.max_model_len
        assert plan.reason == ""
    else:
        assert plan.reason and plan.kv_cache_tokens == 0 and plan.max_concurrent_sequences == 0


def test_llama_405b_on_h100_reason_has_the_numbers() -> None:
    plan = plan_variant(models.get("llama-3.1-405b"), catalog.get("H100-80GB"))
    assert plan.reason.startswith("needs 812 GB of bf16 weights; 8 x H100-80GB offer ")
    assert "pipeline parallelism across nodes is not supported" in plan.reason


@pytest.mark.parametrize(
    ("model", "kv_dtype", "expected"),
    [
        ("llama-3.1-8b", "auto", 2 * 32 * 8 * 128 * 2),  # 128 KiB
        ("llama-3.1-70b", "auto", 2 * 80 * 8 * 128 * 2),  # 320 KiB
        ("llama-3.1-405b", "fp8", 2 * 126 * 8 * 128 * 1),
        ("qwen2.5-7b", "auto", 2 * 28 * 4 * 128 * 2),
        ("llama-3.2-1b", "bf16", 2 * 16 * 8 * 64 * 2),
    ],
)
def test_kv_bytes_per_token(model: str, kv_dtype: str, expected: int) -> None:
    assert planner.kv_bytes_per_token(models.get(model), kv_dtype) == expected


def test_kv_heads_replicate_when_tp_exceeds_them() -> None:
    qwen = models.get("qwen2.5-7b")  # 4 KV heads
    assert planner.kv_bytes_per_token_per_gpu(qwen, 2) == 2 * 28 * 2 * 128 * 2
    assert planner.kv_bytes_per_token_per_gpu(qwen, 4) == 2 * 28 * 1 * 128 * 2


def test_kv_cache_tokens_follow_from_free_memory() -> None:
    model, gpu = models.get("llama-3.1-8b"), catalog.get("A100-40GB")
    plan = plan_variant(model, gpu)
    usable = int(40960 * 1024**2 * 0.9) - 2 * GIB
    free = usable - planner.weights_bytes(model, "bf16")
    assert plan.usable_bytes_per_gpu == usable
    assert plan.kv_cache_tokens == free // (16 * 131072) * 16
    assert plan.max_concurrent_sequences == plan.kv_cache_tokens // 131072


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [("bf16", 16.0e9, 16.1e9), ("fp8", 9.0e9, 9.1e9), ("awq", 5.7e9, 5.9e9)],
)
def test_weights_by_dtype_keep_embeddings_at_16_bit(dtype: str, low: float, high: float) -> None:
    # 8.03 B parameters, of which 2 x 128256 x 4096 = 1.05 B embedding and LM head.
    assert low < planner.weights_bytes(models.get("llama-3.1-8b"), dtype) < high


@pytest.mark.parametrize(
    ("model", "gpu", "kwargs", "fragment"),
    [
        ("llama-3.1-8b", "H100-80GB", {"tensor_parallel_size": 3}, "is not one of 1, 2, 4, 8"),
        ("llama-3.1-8b", "L4", {"tensor_parallel_size": 8, "gpus_per_node": 4}, "exceeds the 4 L4"),
        ("qwen2.5-7b", "L4", {"tensor_parallel_size": 8}, "does not divide the 28 attention heads"),
        ("llama-3.1-70b", "H100-80GB", {"tensor_parallel_size": 1}, "a larger tensorParallelSize"),
        ("llama-3.1-70b", "H100-80GB", {"tensor_parallel_size": 2}, "131,072 needs 131,072"),
        ("llama-3.1-8b", "L4", {"max_model_len": 200_000}, "exceeds the 131072-token context"),
        (
            "llama-3.1-8b",
            "L4",
            {"tensor_parallel_size": 1, "min_sequences": 4},
            "4 sequences of maxModelLen",
        ),
    ],
)
def test_infeasible_reasons(model: str, gpu: str, kwargs: dict[str, object], fragment: str) -> None:
    plan = plan_variant(models.get(model), catalog.get(gpu), **kwargs)  # type: ignore[arg-type]
    assert not plan.feasible
    assert fragment in plan.reason


def test_explicit_tp_that_fits_is_kept_even_if_smaller_would_do() -> None:
    plan = plan_variant(
        models.get("llama-3.1-8b"), catalog.get("H100-80GB"), tensor_parallel_size=4
    )
    assert plan.feasible and plan.tensor_parallel_size == 4
    assert plan.weights_per_gpu_bytes * 4 >= plan.weights_bytes


def test_gpus_per_node_caps_auto_tp() -> None:
    plan = plan_variant(models.get("llama-3.1-70b"), catalog.get("H100-80GB"), gpus_per_node=2)
    assert not plan.feasible
    assert "at tensorParallelSize 2" in plan.reason


def test_more_sequences_need_more_gpus() -> None:
    model, gpu = models.get("llama-3.1-70b"), catalog.get("H200")
    assert plan_variant(model, gpu).tensor_parallel_size == 2
    assert plan_variant(model, gpu, min_sequences=4).tensor_parallel_size == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dtype": "int3"},
        {"kv_cache_dtype": "int4"},
        {"gpu_memory_utilization": 0.0},
        {"gpu_memory_utilization": 1.5},
        {"gpus_per_node": -1},
        {"min_sequences": 0},
    ],
)
def test_arguments_no_caller_should_pass_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        plan_variant(models.get("llama-3.1-8b"), catalog.get("L4"), **kwargs)  # type: ignore[arg-type]
