"""The chart's values model is the one source of values.yaml's defaults, the schema and RBAC."""

from __future__ import annotations

import json
import pathlib

import pydantic
import pytest
import yaml

from gpufleet.chart import command, generate, values

ROOT = pathlib.Path(__file__).parents[2]
CHART = ROOT / generate.CHART


def test_values_yaml_holds_the_models_defaults() -> None:
    written = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert written == values.ChartValues().model_dump(by_alias=True, mode="json")


def test_generated_chart_files_are_fresh() -> None:
    assert command.chart_drift(ROOT) == []
    observability = {generate.CHART / "files" / name for name in generate.OBSERVABILITY_FILES}
    assert set(generate.render(ROOT)) == {generate.SCHEMA, generate.RULES, *observability}


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = json.loads(generate.schema_text())
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values() if
               d.get("type") == "object" and "properties" in d)  # fmt: skip


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"operator": {"routerDiscovery": "dns"}}, "operator.routerDiscovery"),
        ({"operator": {"watchNamespace": ["a"]}}, "operator.watchNamespace"),
        ({"image": {"digest": "sha256:short"}}, "image.digest"),
        ({"operator": {"workers": 0}}, "operator.workers"),
        ({"operator": {"logFormat": "xml"}}, "operator.logFormat"),
    ],
)
def test_a_bad_value_names_its_key(given: dict[str, object], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        values.ChartValues.model_validate(given)
    assert field in {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_chart_rules_are_the_deploy_clusterroles() -> None:
    rbac = (ROOT / generate.RBAC_SOURCE).read_text(encoding="utf-8")
    deploy_role = next(d for d in yaml.safe_load_all(rbac) if d["kind"] == "ClusterRole")
    assert yaml.safe_load(generate.rules_text(rbac)) == deploy_role["rules"]


def test_rules_need_a_clusterrole() -> None:
    with pytest.raises(generate.RbacSourceError, match="no ClusterRole"):
        generate.rules_text("kind: ServiceAccount\n")


def test_crds_stdout_is_every_crd_once(capsys: pytest.CaptureFixture[str]) -> None:
    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["--stdout", "--root", "/nonexistent"])) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert sorted(d["metadata"]["name"] for d in docs if d) == [
        "modelpools.gpufleet.io",
        "routingpolicies.gpufleet.io",
    ]


def test_chart_and_kustomize_base_get_the_crds(tmp_path: pathlib.Path) -> None:
    assert command.target_dirs(tmp_path) == [tmp_path / "crds"]
    assert command.target_dirs(ROOT) == [
        ROOT / "crds",
        ROOT / "charts/gpufleet/crds",
        ROOT / "deploy/crds",
    ]
