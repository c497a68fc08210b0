"""CRD generation: structural schemas, the features the issue asks for, and drift."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from gpufleet import cli
from gpufleet.api import crd
from gpufleet.chart import command

ROOT = pathlib.Path(__file__).parents[2]
RENDERED = crd.render()
DOCS = {name: yaml.safe_load(text) for name, text in RENDERED.items()}
MP = DOCS["modelpools.gpufleet.io.yaml"]
RP = DOCS["routingpolicies.gpufleet.io.yaml"]


def _schema(doc: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def test_committed_crds_match_the_models() -> None:
    problems = [line for d in command.target_dirs(ROOT) for line in command.drift(d, RENDERED)]
    assert problems == [], "run `gpufleet crds`"


@pytest.mark.parametrize("doc", [MP, RP], ids=["ModelPool", "RoutingPolicy"])
def test_schema_is_structural(doc: dict[str, Any]) -> None:
    for path, node in _nodes(_schema(doc)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & set(node), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if path.startswith((".spec.", ".status.")):
            assert node.get("description") or path.endswith(("[]", "}")), path


@pytest.mark.parametrize("doc", [MP, RP], ids=["ModelPool", "RoutingPolicy"])
def test_names_and_subresources(doc: dict[str, Any]) -> None:
    names = doc["spec"]["names"]
    assert names["categories"] == ["gpufleet"]
    assert names["shortNames"] == [{"ModelPool": "mp", "RoutingPolicy": "rp"}[names["kind"]]]
    assert doc["spec"]["group"] == "gpufleet.io"
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}


def test_modelpool_printer_columns() -> None:
    columns = [c["name"] for c in MP["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Model", "Variants", "Ready", "Desired", "Status", "Age"]


def test_keyed_lists_are_maps() -> None:
    maps = {
        path: node["x-kubernetes-list-map-keys"]
        for doc in (MP, RP)
        for path, node in _nodes(_schema(doc))
        if node.get("x-kubernetes-list-type") == "map"
    }
    assert maps[".spec.variants"] == ["name"]
    assert maps[".status.conditions"] == ["type"]
    assert maps[".spec.admission.tenants"] == ["name"]
    for path, keys in maps.items():
        items = dict(_nodes(_schema(MP if path in dict(_nodes(_schema(MP))) else RP)))[path + "[]"]
        for key in keys:
            assert key in items.get("required", []) or "default" in items["properties"][key], path


def test_cross_field_rules_are_cel() -> None:
    rules = [
        rule["rule"]
        for doc in (MP, RP)
        for _, node in _nodes(_schema(doc))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert any("minReplicas <= self.maxReplicas" in r for r in rules)
    assert any("exists_one" in r and "quantization" in r for r in rules)
    assert any("tensorParallelSize in [1, 2, 4, 8]" in r for r in rules)
    assert len(rules) >= 15


@pytest.mark.parametrize("doc", [MP, RP], ids=["ModelPool", "RoutingPolicy"])
def test_lists_and_strings_under_spec_are_bounded(doc: dict[str, Any]) -> None:
    for path, node in _nodes(_schema(doc)["properties"]["spec"], ".spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_object_defaults_make_nested_defaults_visible() -> None:
    spec = _schema(RP)["properties"]["spec"]["properties"]
    assert spec["largeRequests"]["default"]["memoryPressure"]["inputTokens"] == 4000
    large = spec["largeRequests"]["properties"]
    assert large["inputTokens"]["default"] == 8000
    assert large["memoryPressure"]["properties"]["gpuMemoryPercent"]["default"] == 85


def test_drift_is_reported_per_file(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["crds", "--root", str(tmp_path)]) == 0
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 0
    target = tmp_path / "crds" / "modelpools.gpufleet.io.yaml"
    target.write_text(target.read_text().replace("maxItems: 16", "maxItems: 17"))
    (tmp_path / "crds" / "old.gpufleet.io.yaml").write_text("{}")
    capsys.readouterr()
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "modelpools.gpufleet.io.yaml: differs" in err
    assert "old.gpufleet.io.yaml: not generated" in err
    assert "routingpolicies" not in err


def test_chart_copy_once_the_chart_exists(tmp_path: pathlib.Path) -> None:
    (tmp_path / "charts" / "gpufleet").mkdir(parents=True)
    (tmp_path / "charts" / "gpufleet" / "Chart.yaml").write_text("name: gpufleet\n")
    assert cli.main(["crds", "--root", str(tmp_path)]) == 0
    chart_copy = tmp_path / "charts" / "gpufleet" / "crds" / "routingpolicies.gpufleet.io.yaml"
    assert chart_copy.read_text() == RENDERED["routingpolicies.gpufleet.io.yaml"]
    (chart_copy).unlink()
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 1


def test_rendering_is_deterministic() -> None:
    assert crd.render() == RENDERED
    assert json.dumps(DOCS, sort_keys=True)


def test_stdout_is_one_stream_for_kubectl_and_writes_nothing(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["crds", "--stdout"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in documents] == [
        "modelpools.gpufleet.io",
        "routingpolicies.gpufleet.io",
    ]
    assert documents == [DOCS[name] for name in sorted(DOCS)]
    assert list(tmp_path.iterdir()) == []
