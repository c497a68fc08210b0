"""A model outside the catalog for ``gpufleet plan``: the ModelPool's ``architecture``.

The fields are the API's (``gpufleet.api.modelsource.ModelArchitecture``), so a plan
here is what the operator will plan for the pool (``from_architecture`` turns one into
the planner's ``ModelArch`` for both). ``--architecture FILE`` reads them from
YAML: a bare ``architecture`` mapping, a mapping holding one under ``architecture``, or a
whole ModelPool (``spec.model.architecture``). One flag per field (``--num-layers``,
``--num-kv-heads`` …, made from the API type so they never drift) sets or overrides a
value. The API's validation applies: a missing or out-of-range field is an error naming it.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from typing import Any

import pydantic
import yaml

from gpufleet.api.modelsource import ModelArchitecture
from gpufleet.planning import models


class ArchitectureError(ValueError):
    """The architecture given cannot be read or is not valid; the message says why."""


def from_architecture(arch: ModelArchitecture, name: str) -> models.ModelArch:
    """The planner's description of the API's ``arch``, named ``name``."""
    return models.ModelArch(
        name=name,
        parameters=arch.parameters,
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_kv_heads=arch.num_kv_heads,
        head_dim=arch.head_dim,
        max_context=arch.max_context,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings,
    )


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--architecture FILE`` and one flag per ``ModelArchitecture`` field."""
    group = parser.add_argument_group(
        "a model outside the catalog (the ModelPool's spec.model.architecture; "
        "--model then only names it)"
    )
    group.add_argument(
        "--architecture",
        type=pathlib.Path,
        metavar="FILE",
        help="YAML with the architecture fields, or a ModelPool that has them",
    )
    for name, field in ModelArchitecture.model_fields.items():
        if field.annotation is bool:
            group.add_argument(_flag(name), action="store_true", default=None,
                               help=field.description)  # fmt: skip
        else:
            group.add_argument(_flag(name), type=int, metavar="N", help=field.description)


def from_args(args: argparse.Namespace) -> models.ModelArch | None:
    """The architecture the flags describe, named ``args.model``; None when none is given.

    Raises ``ArchitectureError`` naming the file or field at fault.
    """
    fields = ModelArchitecture.model_fields
    given = {(f.alias or n): getattr(args, n) for n, f in fields.items()}
    flags = {key: value for key, value in given.items() if value is not None}
    if args.architecture is None and not flags:
        return None
    values = {**(_read(args.architecture) if args.architecture else {}), **flags}
    try:
        return from_architecture(ModelArchitecture.model_validate(values), args.model)
    except pydantic.ValidationError as exc:
        raise ArchitectureError(f"architecture: {_describe(exc)}") from None


def _read(path: pathlib.Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ArchitectureError(f"{path}: {exc}") from None
    found = _architecture_in(document)
    if found is None:
        raise ArchitectureError(
            f"{path}: no architecture fields (a mapping of them, one under 'architecture', "
            "or a ModelPool with spec.model.architecture)"
        )
    return dict(found)


def _architecture_in(document: object) -> Mapping[str, Any] | None:
    if not isinstance(document, Mapping):
        return None
    spec = document.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("model"), Mapping):
        return _architecture_in(spec["model"])
    inner = document.get("architecture")
    if isinstance(inner, Mapping):
        return inner
    return document if "numLayers" in document or "num_layers" in document else None


def _describe(exc: pydantic.ValidationError) -> str:
    """The first problem as ``numKvHeads (--num-kv-heads): Input should be …``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if not where:
        return str(first["msg"])
    field = pydantic.alias_generators.to_snake(where)
    flag = f" ({_flag(field)})" if field in ModelArchitecture.model_fields else ""
    return f"{where}{flag}: {first['msg']}"
