"""The generated CRDs in a real API server: invalid objects are rejected at apply time
with the field named, every example is accepted, defaults and printer columns work.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from tests import api_cases, conftest

pytestmark = pytest.mark.integration

EXAMPLES = sorted((pathlib.Path(__file__).parents[2] / "examples").glob("*.yaml"))


def _apply(
    cluster: conftest.LocalCluster,
    namespace: str,
    body: dict[str, Any] | str,
    *,
    manager: str = "test",
) -> subprocess.CompletedProcess[str]:
    text = body if isinstance(body, str) else yaml.safe_dump(body)
    return cluster.kubectl(
        "apply", "--server-side", f"--field-manager={manager}", "-n", namespace, "-f", "-",
        input=text, check=False,
    )  # fmt: skip


def _get(cluster: conftest.LocalCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


@pytest.mark.parametrize("case", api_cases.INVALID, ids=lambda c: c.id)
def test_invalid_object_is_rejected_naming_the_field(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str, case: api_cases.Case
) -> None:
    result = _apply(cluster, namespace, case.body)
    assert result.returncode != 0, f"accepted: {case.body}"
    assert case.field in result.stderr, result.stderr
    kind, name = case.body["kind"], case.body["metadata"]["name"]
    absent = cluster.kubectl("get", kind, name, "-n", namespace, check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr


@pytest.mark.parametrize(
    "body", [api_cases.modelpool(), api_cases.routingpolicy()], ids=["mp", "rp"]
)
def test_base_objects_are_accepted(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str, body: dict[str, Any]
) -> None:
    result = _apply(cluster, namespace, body)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str, path: pathlib.Path
) -> None:
    result = _apply(cluster, namespace, path.read_text())
    assert result.returncode == 0, result.stderr


def test_api_server_fills_in_defaults(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str
) -> None:
    assert _apply(cluster, namespace, api_cases.routingpolicy("d")).returncode == 0
    spec = _get(cluster, namespace, "routingpolicy", "d")["spec"]
    assert spec["strategy"] == "cost"
    large = spec["largeRequests"]
    assert (large["inputTokens"], large["predictedKvMb"]) == (8000, 6000)
    assert large["memoryPressure"] == {
        "gpuMemoryPercent": 85,
        "inputTokens": 4000,
        "predictedKvMb": 3000,
    }
    assert [c["name"] for c in spec["requestClasses"]] == ["interactive", "batch"]
    assert _apply(cluster, namespace, api_cases.modelpool("d")).returncode == 0
    variant = _get(cluster, namespace, "modelpool", "d")["spec"]["variants"][0]
    assert variant["tensorParallelSize"] == "auto" and variant["gpuMemoryUtilization"] == 0.9


def test_server_side_apply_merges_variants_by_name(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str
) -> None:
    assert _apply(cluster, namespace, api_cases.modelpool("m"), manager="a").returncode == 0
    extra = api_cases.modelpool("m")
    extra["spec"] = {
        "model": extra["spec"]["model"],
        "variants": [{"name": "b200", "gpu": "B200", "minReplicas": 0}],
    }
    assert _apply(cluster, namespace, extra, manager="b").returncode == 0
    names = [v["name"] for v in _get(cluster, namespace, "mp", "m")["spec"]["variants"]]
    assert sorted(names) == ["b200", "h100", "l4"]


def test_short_names_category_and_printer_columns(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str
) -> None:
    assert _apply(cluster, namespace, api_cases.modelpool("p")).returncode == 0
    assert _apply(cluster, namespace, api_cases.routingpolicy("r")).returncode == 0
    header, row = cluster.kubectl("get", "mp", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "VARIANTS", "READY", "DESIRED", "STATUS", "AGE"]
    assert row.split()[:2] == ["p", "llama-3.1-8b"]
    both = cluster.kubectl("get", "gpufleet", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(both) == ["modelpool.gpufleet.io/p", "routingpolicy.gpufleet.io/r"]
    assert cluster.kubectl("get", "rp", "r", "-n", namespace).returncode == 0


def test_status_is_a_subresource(
    cluster: conftest.LocalCluster, crds: list[str], namespace: str
) -> None:
    body = api_cases.modelpool("s")
    body["status"] = {"readyReplicas": 7}
    assert _apply(cluster, namespace, body).returncode == 0
    assert "status" not in _get(cluster, namespace, "mp", "s") or (
        _get(cluster, namespace, "mp", "s")["status"].get("readyReplicas") != 7
    )


def test_kubectl_explain_shows_field_descriptions(
    cluster: conftest.LocalCluster, crds: list[str]
) -> None:
    out = cluster.kubectl("explain", "modelpool.spec.variants.tensorParallelSize").stdout
    assert "GPUs per replica" in out
