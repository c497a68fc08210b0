"""The model catalog: architecture numbers consistent with the published parameter counts."""

from __future__ import annotations

import pytest

from gpufleet.planning import models

# Query/key/value projections carry biases in Qwen2 (config: "attention_bias" implied by
# the Qwen2 architecture), not in Llama or Mistral.
_QKV_BIAS = {"qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b"}


def _parameters(m: models.ModelArch) -> int:
    """Parameters implied by a Llama-style decoder's config."""
    q, kv = m.num_attention_heads * m.head_dim, m.num_kv_heads * m.head_dim
    attention = m.hidden_size * (q + 2 * kv) + q * m.hidden_size
    if m.name in _QKV_BIAS:
        attention += q + 2 * kv
    mlp = 3 * m.hidden_size * m.intermediate_size * m.num_experts
    router = m.hidden_size * m.num_experts if m.num_experts > 1 else 0
    layer = attention + mlp + router + 2 * m.hidden_size
    return m.num_layers * layer + m.embedding_parameters + m.hidden_size


@pytest.mark.parametrize("name", list(models.MODELS))
def test_published_parameter_count_matches_architecture(name: str) -> None:
    model = models.MODELS[name]
    assert _parameters(model) == pytest.approx(model.parameters, rel=0.001)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_heads_are_consistent(name: str) -> None:
    model = models.MODELS[name]
    assert model.num_attention_heads % model.num_kv_heads == 0
    assert model.hf_id.count("/") == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
    ],
)
def test_get_by_name_or_hub_id(query: str, expected: str) -> None:
    assert models.get(query).name == expected


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(models.UnknownModel) as info:
        models.get("gpt-5")
    assert "'gpt-5'" in str(info.value)
    assert all(name in str(info.value) for name in models.MODELS)


@pytest.mark.parametrize(
    "fields",
    [
        {"num_kv_heads": 3},
        {"num_layers": 0},
        {"head_dim": 0},
        {"parameters": -1},
    ],
)
def test_inconsistent_architecture_is_rejected(fields: dict[str, int]) -> None:
    base = {
        "name": "x",
        "parameters": 10**9,
        "num_layers": 8,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "num_kv_heads": 4,
        "head_dim": 64,
        "max_context": 4096,
    }
    with pytest.raises(ValueError):
        models.ModelArch(**{**base, **fields})  # type: ignore[arg-type]
