"""`gpufleet plan`: JSON or YAML for programs, a table for people, one-line errors, and
an exit status that says whether the model fits."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from gpufleet import cli
from gpufleet.planning import models


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert cli.main(["plan", *args, "-o", "json", "--allow-infeasible"]) == 0
    out: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return out


def test_json_has_one_object_per_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    plans = _json(capsys, "--model", "llama-3.1-70b", "--gpu", "H100-80GB", "--gpu", "H200")
    assert [(p["gpu"], p["feasible"], p["tensorParallelSize"]) for p in plans] == [
        ("H100-80GB", True, 4),
        ("H200", True, 2),
    ]
    for plan in plans:
        assert {"kvCacheTokens", "maxConcurrentSequences", "reason"} <= plan.keys()


def test_infeasible_is_null_tp_with_reason(capsys: pytest.CaptureFixture[str]) -> None:
    (plan,) = _json(capsys, "--model", "llama-3.1-405b", "--gpu", "H100-80GB")
    assert plan["tensorParallelSize"] is None and plan["feasible"] is False
    assert "812 GB" in str(plan["reason"])


def test_options_reach_the_planner(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--model", "llama-3.1-8b", "--gpu", "L4", "--max-model-len", "8192", "--dtype", "fp8")
    (plan,) = _json(capsys, *args, "--gpus-per-node", "1")
    assert plan["maxModelLen"] == 8192 and plan["dtype"] == "fp8"
    assert plan["tensorParallelSize"] == 1


def test_all_generations_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(_json(capsys, "--model", "mistral-7b")) == 8


def test_table_lists_gpus_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["plan", "--model", "llama-3.1-405b", "--gpu", "H100-80GB", "--gpu", "B200"]) == 0
    )
    out = capsys.readouterr().out
    assert "llama-3.1-405b" in out.splitlines()[0]
    assert any(line.startswith("B200") and " yes " in line for line in out.splitlines())
    assert "H100-80GB: needs 812 GB" in out


@pytest.mark.parametrize(
    ("args", "fragment", "known"),
    [
        (["--model", "gpt-5"], "unknown model 'gpt-5'", "qwen2.5-72b"),
        (
            ["--model", "llama-3.1-8b", "--gpu", "X100"],
            "unknown GPU generation 'X100'",
            "A100-40GB",
        ),
    ],
)
def test_unknown_names_exit_2_listing_known_ones(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str, known: str
) -> None:
    assert cli.main(["plan", *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and known in err
    assert len(err.strip().splitlines()) == 1


def test_no_gpu_that_fits_exits_1_unless_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--model", "llama-3.1-405b", "--gpu", "L4", "--gpu", "A10G"]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert "L4: needs 812 GB" in out
    assert err.strip() == "gpufleet plan: llama-3.1-405b fits none of the GPUs asked for"
    assert cli.main([*args, "--allow-infeasible"]) == 0


def test_yaml_is_the_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--model", "llama-3.1-70b", "--gpu", "H200", "--gpu", "L4"]
    assert cli.main([*args, "-o", "json", "--allow-infeasible"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert cli.main([*args, "-o", "yaml", "--allow-infeasible"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json


def test_every_feasible_tp_is_listed_with_its_kv_capacity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (plan,) = _json(capsys, "--model", "llama-3.1-70b", "--gpu", "H100-80GB")
    options = plan["options"]
    assert isinstance(options, list)
    assert [o["tensorParallelSize"] for o in options] == [4, 8]
    assert options[0]["kvCacheTokens"] == plan["kvCacheTokens"]
    assert options[1]["kvCacheTokens"] > options[0]["kvCacheTokens"]
    assert cli.main(["plan", "--model", "llama-3.1-70b", "--gpu", "H100"]) == 0
    assert "H100-80GB  TP 4: 482,704 (3); TP 8: 1,396,064 (10)" in capsys.readouterr().out


_LLAMA_8B = models.get("llama-3.1-8b")
_FIELDS = {
    "parameters": _LLAMA_8B.parameters,
    "numLayers": _LLAMA_8B.num_layers,
    "hiddenSize": _LLAMA_8B.hidden_size,
    "numAttentionHeads": _LLAMA_8B.num_attention_heads,
    "numKvHeads": _LLAMA_8B.num_kv_heads,
    "headDim": _LLAMA_8B.head_dim,
    "maxContext": _LLAMA_8B.max_context,
    "vocabSize": _LLAMA_8B.vocab_size,
}


def _flags(fields: dict[str, int]) -> list[str]:
    return [f for k, v in fields.items() for f in ("--" + _kebab(k), str(v))]


def _kebab(camel: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in camel)


def test_an_architecture_from_flags_plans_as_the_catalog_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (catalog,) = _json(capsys, "--model", "llama-3.1-8b", "--gpu", "L4")
    (custom,) = _json(capsys, "--model", "my-llama", "--gpu", "L4", *_flags(_FIELDS))
    assert custom["model"] == "my-llama"
    assert {k: v for k, v in custom.items() if k != "model"} == {
        k: v for k, v in catalog.items() if k != "model"
    }


@pytest.mark.parametrize(
    "document",
    [
        _FIELDS,
        {"architecture": _FIELDS},
        {"kind": "ModelPool", "spec": {"model": {"name": "m", "architecture": _FIELDS}}},
    ],
    ids=["fields", "under-architecture", "modelpool"],
)
def test_an_architecture_from_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, document: object
) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(document))
    (from_file,) = _json(capsys, "--model", "m", "--gpu", "L4", "--architecture", str(path))
    (override,) = _json(capsys, "--model", "m", "--gpu", "L4", "--architecture", str(path),
                        "--max-context", "8192")  # fmt: skip
    assert from_file["maxModelLen"] == _LLAMA_8B.max_context
    assert override["maxModelLen"] == 8192


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({k: v for k, v in _FIELDS.items() if k != "headDim"}, "headDim (--head-dim): Field"),
        ({**_FIELDS, "numKvHeads": 7}, "numKvHeads must divide numAttentionHeads"),
    ],
)
def test_an_invalid_architecture_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], fields: dict[str, int], fragment: str
) -> None:
    assert cli.main(["plan", "--model", "m", "--gpu", "L4", *_flags(fields)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
