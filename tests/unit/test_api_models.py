"""The pydantic API models: invalid objects rejected naming the field, conventions kept."""

from __future__ import annotations

import pathlib
import re
import typing
from typing import Any

import pydantic
import pytest
import yaml
from pydantic import alias_generators

from gpufleet.api import common, crd, resources
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.hardware import catalog
from gpufleet.planning import models
from tests import api_cases

EXAMPLES = sorted(pathlib.Path(__file__).parents[2].joinpath("examples").glob("*.yaml"))
_KINDS: dict[str, type[pydantic.BaseModel]] = {
    "ModelPool": resources.ModelPool,
    "RoutingPolicy": resources.RoutingPolicy,
}


def _validate(body: dict[str, Any]) -> pydantic.BaseModel:
    return _KINDS[body["kind"]].model_validate(body)


def test_base_objects_are_valid() -> None:
    _validate(api_cases.modelpool())
    _validate(api_cases.routingpolicy())


@pytest.mark.parametrize("case", api_cases.INVALID, ids=lambda c: c.id)
def test_invalid_object_is_rejected_naming_the_field(case: api_cases.Case) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        _validate(case.body)
    assert case.field in str(info.value)


def test_invalid_cases_are_distinct() -> None:
    assert len({c.id for c in api_cases.INVALID}) == len(api_cases.INVALID) >= 20
    assert len({repr(c.body) for c in api_cases.INVALID}) == len(api_cases.INVALID)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: pathlib.Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] in _KINDS]
    assert documents
    for document in documents:
        _validate(document)


def test_examples_cover_a_mixed_fleet() -> None:
    gpus = set()
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "ModelPool":
                gpus |= {v["gpu"] for v in doc["spec"]["variants"]}
    assert len(gpus) >= 5


def test_large_request_defaults() -> None:
    spec = RoutingPolicySpec(pools=("p",))
    large = spec.large_requests
    assert (large.input_tokens, large.predicted_kv_mb) == (8000, 6000)
    pressure = large.memory_pressure
    assert (pressure.gpu_memory_percent, pressure.input_tokens, pressure.predicted_kv_mb) == (
        85,
        4000,
        3000,
    )


def test_snake_case_attributes_populate_too() -> None:
    spec = RoutingPolicySpec.model_validate({"pools": ["p"], "default_class": "batch"})
    assert spec.default_class == "batch"
    assert spec.model_dump(by_alias=True)["defaultClass"] == "batch"


def _models() -> list[type[pydantic.BaseModel]]:
    seen: dict[str, type[pydantic.BaseModel]] = {}
    todo: list[type[pydantic.BaseModel]] = [k.spec for k in crd.KINDS] + [
        k.status for k in crd.KINDS
    ]
    while todo:
        model = todo.pop()
        if model.__name__ in seen:
            continue
        seen[model.__name__] = model
        for info in model.model_fields.values():
            todo += [
                t
                for t in _types(info.annotation)
                if isinstance(t, type) and issubclass(t, pydantic.BaseModel)
            ]
    return list(seen.values())


def _types(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation, *(t for a in args for t in _types(a))]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_fields_follow_the_api_conventions(model: type[pydantic.BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("populate_by_name") is True
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"
        assert info.alias == alias_generators.to_camel(name)
        assert alias_generators.to_snake(info.alias) == name, f"{info.alias} does not round-trip"


def test_gpu_names_match_the_hardware_catalog() -> None:
    assert tuple(catalog.GPUS) == common.GPU_NAMES


def test_catalog_model_names_match_the_model_catalog() -> None:
    assert typing.get_args(common.CatalogModelName) == tuple(models.MODELS)


def test_request_class_by_name() -> None:
    spec = RoutingPolicySpec.model_validate(
        {"pools": ["p"], "requestClasses": [{"name": "interactive", "slo": {"ttftMillis": 500}},
                                            {"name": "batch"}], "defaultClass": "batch"}
    )  # fmt: skip
    found = spec.request_class("interactive")
    assert found is not None and found.slo.ttft_millis == 500
    assert spec.request_class("bulk") is None


@pytest.mark.parametrize(
    ("admission", "allowed"),
    [
        ({"allowedClasses": ["batch"]}, "admission.allowedClasses"),
        ({"tenants": [{"name": "t", "apiKeySecretRef": {"name": "s"},
                       "allowedClasses": ["batch"]}]}, "admission.tenants[t]"),
    ],
    ids=["policy", "tenant"],
)  # fmt: skip
def test_a_default_class_a_client_may_not_use_is_refused(
    admission: dict[str, object], allowed: str
) -> None:
    spec = {**api_cases.routingpolicy()["spec"], "admission": admission}
    with pytest.raises(pydantic.ValidationError, match=re.escape(allowed)):
        RoutingPolicySpec.model_validate(spec)
    fine = RoutingPolicySpec.model_validate({**spec, "defaultClass": "batch"}).admission
    assert fine.allowed_for(fine.tenants[0] if fine.tenants else None) == ("batch",)
