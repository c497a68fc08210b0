"""Weight and KV-cache precisions: the names gpufleet accepts and their bytes per value.

Pure data. The names are the API's (``gpufleet.api.common``). Weight formats follow
vLLM's ``--dtype`` / ``--quantization`` choices; 4-bit formats (``int4``, ``awq``,
``gptq``) carry group-wise scales, so they cost a little more than half a byte per
weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from gpufleet.api.common import KvCacheDtype, WeightDtype

WEIGHT_DTYPES: tuple[str, ...] = get_args(WeightDtype)
KV_CACHE_DTYPES: tuple[str, ...] = get_args(KvCacheDtype)

# 4-bit AWQ/GPTQ with the usual group size 128: 4 bits per weight plus one fp16 scale and
# one 4-bit zero point per group = 4 + 20/128 bits (AutoAWQ / AutoGPTQ default q_group_size
# 128). int8 and fp8 use per-channel or per-tensor scales, which are negligible.
_INT4_BYTES = (4 + 20 / 128) / 8

WEIGHT_BYTES: Mapping[str, float] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": _INT4_BYTES,
    "awq": _INT4_BYTES,
    "gptq": _INT4_BYTES,
}

_KV_BYTES: Mapping[str, int] = {"bf16": 2, "fp16": 2, "fp8": 1}


def weight_bytes(dtype: str) -> float:
    """Bytes per quantized weight; raises ``ValueError`` naming the accepted dtypes."""
    try:
        return WEIGHT_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(WEIGHT_DTYPES)}") from None


def kv_bytes(kv_cache_dtype: str) -> int:
    """Bytes per KV-cache element; ``auto`` is the activation dtype, which is 16 bit.

    vLLM's ``--kv-cache-dtype auto`` keeps the model's activation dtype even for fp8,
    int8 and 4-bit weights, so only an explicit ``fp8`` halves the KV cache.
    """
    if kv_cache_dtype == "auto":
        return 2
    try:
        return _KV_BYTES[kv_cache_dtype]
    except KeyError:
        accepted = ", ".join(KV_CACHE_DTYPES)
        raise ValueError(
            f"unknown kv cache dtype {kv_cache_dtype!r}; accepted: {accepted}"
        ) from None
