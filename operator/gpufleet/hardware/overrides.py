"""Site-specific changes to the GPU catalog, read from a YAML file or a mounted ConfigMap.

The document is a trust boundary, so it is validated with pydantic::

    gpus:
      - name: H100-80GB            # a known generation: only the fields given change
        throughputWeight: 1.8
        maxGpusPerNode: 4
      - name: RTX-6000-ADA         # a new generation: every field except the defaulted ones
        memoryMib: 49140
        bandwidthGbps: 960
        bf16Tflops: 364
        products: [NVIDIA-RTX-6000-Ada-Generation]
        family: ada-lovelace

``apply_overrides`` is pure; ``load_catalog`` reads the file (a ConfigMap mounted as a
volume is a file). Errors are ``CatalogError`` naming the entry and field at fault.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import pydantic
import yaml
from pydantic import alias_generators

from gpufleet.hardware import catalog


class CatalogError(ValueError):
    """An override document that cannot be applied; the message names the field."""


class GpuOverride(pydantic.BaseModel):
    """One entry of the ``gpus`` list; unset fields keep the catalog's value."""

    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=alias_generators.to_camel
    )

    name: str = pydantic.Field(min_length=1, max_length=63)
    memory_mib: int | None = pydantic.Field(default=None, gt=0)
    bandwidth_gbps: float | None = pydantic.Field(default=None, gt=0)
    bf16_tflops: float | None = pydantic.Field(default=None, ge=0)
    fp8_tflops: float | None = pydantic.Field(default=None, ge=0)
    interconnect: str | None = pydantic.Field(default=None, pattern="^(nvlink|pcie)$")
    nvlink_gbps: float | None = pydantic.Field(default=None, ge=0)
    throughput_weight: float | None = pydantic.Field(default=None, gt=0)
    decode_efficiency: float | None = pydantic.Field(default=None, gt=0, le=1)
    prefill_efficiency: float | None = pydantic.Field(default=None, gt=0, le=1)
    family: str | None = None
    products: tuple[str, ...] | None = pydantic.Field(default=None, min_length=1)
    max_gpus_per_node: int | None = pydantic.Field(default=None, ge=1, le=64)


class CatalogOverrides(pydantic.BaseModel):
    """The whole override document."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    gpus: tuple[GpuOverride, ...] = ()


_REQUIRED_FOR_NEW = ("memory_mib", "bandwidth_gbps", "bf16_tflops", "products")
_NEW_DEFAULTS: Mapping[str, Any] = {
    "fp8_tflops": 0.0,
    "interconnect": "pcie",
    "nvlink_gbps": 0.0,
    "family": "undefined",
    "max_gpus_per_node": 8,
}


def parse_overrides(text: str) -> CatalogOverrides:
    """Validate a YAML override document; raises ``CatalogError`` naming the field."""
    try:
        return CatalogOverrides.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, pydantic.ValidationError) as exc:
        raise CatalogError(f"invalid GPU catalog overrides: {exc}") from exc


def apply_overrides(
    overrides: CatalogOverrides, base: Mapping[str, catalog.GpuSpec] = catalog.GPUS
) -> Mapping[str, catalog.GpuSpec]:
    """A new catalog: ``base`` with each override merged into, or added as, an entry."""
    gpus = dict(base)
    for entry in overrides.gpus:
        gpus[entry.name] = _merged(entry, gpus.get(entry.name))
    return gpus


def load_catalog(path: pathlib.Path | None) -> Mapping[str, catalog.GpuSpec]:
    """The built-in catalog with the overrides in ``path`` applied (none when None)."""
    if path is None:
        return catalog.GPUS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read GPU catalog overrides {path}: {exc}") from exc
    return apply_overrides(parse_overrides(text))


def _merged(entry: GpuOverride, known: catalog.GpuSpec | None) -> catalog.GpuSpec:
    given = entry.model_dump(exclude_none=True, exclude={"name"})
    if known is not None:
        return dataclasses.replace(known, **given)
    missing = [f for f in _REQUIRED_FOR_NEW if f not in given]
    if missing:
        names = ", ".join(alias_generators.to_camel(f) for f in missing)
        raise CatalogError(f"gpus[{entry.name}]: a new GPU generation needs {names}")
    efficiency = given.get("decode_efficiency", catalog.DEFAULT_DECODE_EFFICIENCY)
    weight = catalog.measured_weight(given["bandwidth_gbps"], efficiency)
    fields = {**_NEW_DEFAULTS, "throughput_weight": weight, **given}
    return catalog.GpuSpec(name=entry.name, **fields)
