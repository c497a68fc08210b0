"""The model a ModelPool serves: its name, where the weights are, and its architecture.

Either a catalog name (``gpufleet.planning.models``) or an explicit architecture; the
weight dtype and KV-cache dtype feed the planner.
"""

from __future__ import annotations

import pydantic

from gpufleet.api import common
from gpufleet.api.common import ApiModel, cel, rules

SOURCE_PATTERN = "^({})$".format(
    "|".join(
        (
            r"hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+(@[A-Za-z0-9._-]+)?",
            r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?",
            r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?",
        )
    )
)

# Flags the operator derives from the variant; extraArgs may not set them.


class ModelArchitecture(ApiModel):
    """The architecture numbers of a model outside the catalog (from its config.json)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.numAttentionHeads % self.numKvHeads == 0",
                "numKvHeads must divide numAttentionHeads",
                field_path=".numKvHeads",
            )
        )
    )

    parameters: int = pydantic.Field(
        ge=1_000_000, le=10**13, description="Total parameter count (all experts of an MoE model)."
    )
    num_layers: int = pydantic.Field(
        ge=1, le=1024, description="Transformer layers (num_hidden_layers)."
    )
    hidden_size: int = pydantic.Field(ge=1, le=131072, description="Model width (hidden_size).")
    num_attention_heads: int = pydantic.Field(ge=1, le=1024, description="Query heads.")
    num_kv_heads: int = pydantic.Field(
        ge=1,
        le=1024,
        description="Key/value heads (num_key_value_heads; = query heads without GQA).",
    )
    head_dim: int = pydantic.Field(ge=1, le=1024, description="Dimension of one attention head.")
    max_context: int = pydantic.Field(
        ge=1,
        le=10_000_000,
        description="Context length the model supports (max_position_embeddings).",
    )
    vocab_size: int = pydantic.Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Vocabulary size; 0 = unknown (embeddings then count as quantized).",
    )
    tie_word_embeddings: bool = pydantic.Field(
        default=False, description="Whether the LM head shares the embedding matrix."
    )

    @pydantic.model_validator(mode="after")
    def _kv_heads_divide(self) -> ModelArchitecture:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("numKvHeads must divide numAttentionHeads")
        return self


class ModelSpec(ApiModel):
    """Which model the pool serves and how its weights are stored."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.catalogName) != has(self.architecture)",
                "exactly one of catalogName and architecture must be set",
                reason="FieldValueRequired",
            ),
            cel(
                "!has(self.architecture) || !has(self.maxModelLen) "
                "|| self.maxModelLen <= self.architecture.maxContext",
                "maxModelLen must not exceed architecture.maxContext",
                field_path=".maxModelLen",
            ),
        )
    )

    name: str = pydantic.Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$",
        description="Name clients send in the OpenAI `model` field (--served-model-name).",
    )
    source: str = pydantic.Field(
        max_length=1024,
        pattern=SOURCE_PATTERN,
        description="Where the weights are: hf://ORG/REPO[@REV], s3://BUCKET/PREFIX, pvc://CLAIM/PATH.",
    )
    catalog_name: common.CatalogModelName | None = pydantic.Field(
        default=None, description="A model of gpufleet's catalog; exclusive with architecture."
    )
    architecture: ModelArchitecture | None = pydantic.Field(
        default=None,
        description="Architecture of a model outside the catalog; exclusive with catalogName.",
    )
    dtype: common.WeightDtype = pydantic.Field(
        default="bf16",
        description="Weight precision or quantization format (variants may override).",
    )
    kv_cache_dtype: common.KvCacheDtype = pydantic.Field(
        default="auto", description="KV-cache precision; auto = 16 bit, fp8 halves the cache."
    )
    max_model_len: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Longest sequence served (vLLM --max-model-len); unset = the model's context.",
    )

    @pydantic.model_validator(mode="after")
    def _one_architecture(self) -> ModelSpec:
        if (self.catalog_name is None) == (self.architecture is None):
            raise ValueError("exactly one of catalogName and architecture must be set")
        arch, limit = self.architecture, self.max_model_len
        if arch is not None and limit is not None and limit > arch.max_context:
            raise ValueError("maxModelLen must not exceed architecture.maxContext")
        return self
