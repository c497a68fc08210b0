"""Names, labels and annotations the operator puts on what it creates (see DESIGN.md).

Pure constants and the helpers that turn pool and variant names into them. Selectors
use only ``managed-by``, ``pool`` and ``variant``: labels that never change for the life
of a Deployment (its selector is immutable).
"""

from __future__ import annotations

import re

from gpufleet.api import common

FIELD_MANAGER = "gpufleet"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gpufleet"
POOL = f"{common.GROUP}/pool"
VARIANT = f"{common.GROUP}/variant"
GPU = f"{common.GROUP}/gpu"
MODEL = f"{common.GROUP}/model"
TENSOR_PARALLEL_SIZE = f"{common.GROUP}/tensor-parallel-size"
SPEC_HASH = f"{common.GROUP}/spec-hash"
MODEL_ANNOTATION = f"{common.GROUP}/model"
COMPONENT = "app.kubernetes.io/component"
MANAGED = {MANAGED_BY: MANAGED_BY_VALUE}

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def pool_labels(pool: str) -> dict[str, str]:
    """Labels every child of ``pool`` carries (and selects on)."""
    return {MANAGED_BY: MANAGED_BY_VALUE, POOL: pool}


def variant_selector(pool: str, variant: str) -> dict[str, str]:
    """The immutable selector of a variant's Deployment."""
    return pool_labels(pool) | {VARIANT: variant}


def label_value(text: str) -> str:
    """``text`` as a valid label value: unsafe runs become '_', at most 63 characters,
    alphanumeric at both ends (``meta-llama/Llama-3.1-8B`` → ``meta-llama_Llama-3.1-8B``)."""
    return _LABEL_UNSAFE.sub("_", text)[:63].strip("._-")
