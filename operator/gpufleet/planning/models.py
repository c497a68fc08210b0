"""The model catalog: the architecture numbers the planner needs, per well-known model.

Pure data. Every figure comes from the model's published ``config.json`` on the Hugging
Face Hub (cited per entry); ``parameters`` is the published total parameter count
(the safetensors metadata / model card). A model outside the catalog is described with
``ModelArch`` directly (the ModelPool API's explicit ``architecture``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gpufleet import lookup


@dataclasses.dataclass(frozen=True, slots=True)
class ModelArch:
    """What the planner needs to know about one model.

    ``vocab_size`` and ``tie_word_embeddings`` let the planner keep embeddings and the
    LM head at 16 bit when the rest is quantized (as vLLM does); ``vocab_size == 0``
    means unknown, and then every weight is counted at the quantized width.
    """

    name: str
    parameters: int
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int
    vocab_size: int = 0
    tie_word_embeddings: bool = False
    intermediate_size: int = 0
    num_experts: int = 1
    hf_id: str = ""

    def __post_init__(self) -> None:
        for field in ("parameters", "num_layers", "hidden_size", "num_attention_heads"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.num_kv_heads <= 0 or self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads ({self.num_kv_heads}) must divide "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.head_dim <= 0 or self.max_context <= 0:
            raise ValueError("head_dim and max_context must be positive")

    @property
    def embedding_parameters(self) -> int:
        """Parameters of the token embedding and, when untied, the LM head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)


_MODELS: tuple[ModelArch, ...] = (
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    ModelArch(
        name="llama-3.2-1b",
        hf_id="meta-llama/Llama-3.2-1B-Instruct",
        parameters=1_235_814_400,
        num_layers=16,
        hidden_size=2048,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=64,
        max_context=131072,
        vocab_size=128256,
        tie_word_embeddings=True,
        intermediate_size=8192,
    ),
    # https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json
    ModelArch(
        name="llama-3.2-3b",
        hf_id="meta-llama/Llama-3.2-3B-Instruct",
        parameters=3_212_749_824,
        num_layers=28,
        hidden_size=3072,
        num_attention_heads=24,
        num_kv_heads=8,
        head_dim=128,
        max_context=131072,
        vocab_size=128256,
        tie_word_embeddings=True,
        intermediate_size=8192,
    ),
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    ModelArch(
        name="llama-3.1-8b",
        hf_id="meta-llama/Llama-3.1-8B-Instruct",
        parameters=8_030_261_248,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        max_context=131072,
        vocab_size=128256,
        intermediate_size=14336,
    ),
    # https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json
    ModelArch(
        name="llama-3.1-70b",
        hf_id="meta-llama/Llama-3.1-70B-Instruct",
        parameters=70_553_706_496,
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=128,
        max_context=131072,
        vocab_size=128256,
        intermediate_size=28672,
    ),
    # https://huggingface.co/meta-llama/Llama-3.1-405B/blob/main/config.json
    ModelArch(
        name="llama-3.1-405b",
        hf_id="meta-llama/Llama-3.1-405B-Instruct",
        parameters=405_853_388_800,
        num_layers=126,
        hidden_size=16384,
        num_attention_heads=128,
        num_kv_heads=8,
        head_dim=128,
        max_context=131072,
        vocab_size=128256,
        intermediate_size=53248,
    ),
    # https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3/blob/main/config.json
    ModelArch(
        name="mistral-7b",
        hf_id="mistralai/Mistral-7B-Instruct-v0.3",
        parameters=7_248_023_552,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        max_context=32768,
        vocab_size=32768,
        intermediate_size=14336,
    ),
    # https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/config.json
    # (all 8 experts stay resident: memory is set by the total, not the active, count)
    ModelArch(
        name="mixtral-8x7b",
        hf_id="mistralai/Mixtral-8x7B-Instruct-v0.1",
        parameters=46_702_792_704,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        max_context=32768,
        vocab_size=32000,
        intermediate_size=14336,
        num_experts=8,
    ),
    # https://huggingface.co/mistralai/Mixtral-8x22B-Instruct-v0.1/blob/main/config.json
    ModelArch(
        name="mixtral-8x22b",
        hf_id="mistralai/Mixtral-8x22B-Instruct-v0.1",
        parameters=140_630_071_296,
        num_layers=56,
        hidden_size=6144,
        num_attention_heads=48,
        num_kv_heads=8,
        head_dim=128,
        max_context=65536,
        vocab_size=32768,
        intermediate_size=16384,
        num_experts=8,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/config.json
    # (32768 is the native context; YaRN rope scaling extends it, which vLLM needs told)
    ModelArch(
        name="qwen2.5-7b",
        hf_id="Qwen/Qwen2.5-7B-Instruct",
        parameters=7_615_616_512,
        num_layers=28,
        hidden_size=3584,
        num_attention_heads=28,
        num_kv_heads=4,
        head_dim=128,
        max_context=32768,
        vocab_size=152064,
        intermediate_size=18944,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-32B-Instruct/blob/main/config.json
    ModelArch(
        name="qwen2.5-32b",
        hf_id="Qwen/Qwen2.5-32B-Instruct",
        parameters=32_763_876_352,
        num_layers=64,
        hidden_size=5120,
        num_attention_heads=40,
        num_kv_heads=8,
        head_dim=128,
        max_context=32768,
        vocab_size=152064,
        intermediate_size=27648,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/config.json
    ModelArch(
        name="qwen2.5-72b",
        hf_id="Qwen/Qwen2.5-72B-Instruct",
        parameters=72_706_203_648,
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=128,
        max_context=32768,
        vocab_size=152064,
        intermediate_size=29568,
    ),
)

MODELS: Mapping[str, ModelArch] = {m.name: m for m in _MODELS}


class UnknownModel(KeyError):
    """A model name that is not in the catalog; ``args`` = (name, the closest names)."""

    def __str__(self) -> str:
        closest = self.args[1] if len(self.args) > 1 else ()
        return (
            f"unknown model {self.args[0]!r}; {lookup.did_you_mean(closest)}"
            f"known: {', '.join(MODELS)}"
        )


def get(name: str) -> ModelArch:
    """The catalog entry for ``name`` (case-insensitive, or its Hugging Face id).

    Raises ``UnknownModel`` listing the known names.
    """
    found = _BY_NAME.get(name.lower())
    if found is None:
        raise UnknownModel(name)
    return found


def _by_name() -> dict[str, ModelArch]:
    """Each name ``get`` accepts -> its entry, the first in catalog order winning: the
    router looks a model up for every request, so once, not a scan each time."""
    found: dict[str, ModelArch] = {}
    for model in _MODELS:
        found.setdefault(model.name, model)
        found.setdefault(model.hf_id.lower(), model)
    return found


_BY_NAME: Mapping[str, ModelArch] = _by_name()


def resolve(typed: str) -> ModelArch:
    """The entry a person means by ``typed``: ``get``'s names, the Hugging Face id with
    or without its organisation, or a unique start (``mistral`` is ``mistral-7b``), as
    ``lookup.resolve``. Raises ``UnknownModel`` with the closest names."""
    aliases = {alias: m.name for m in _MODELS if m.hf_id for alias in _hf_names(m.hf_id)}
    try:
        return MODELS[lookup.resolve(typed, MODELS, aliases)]
    except lookup.LookupFailed as exc:
        raise UnknownModel(typed, exc.candidates) from None


def _hf_names(hf_id: str) -> tuple[str, str]:
    return hf_id, hf_id.rpartition("/")[2]
