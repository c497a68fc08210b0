"""`gpufleet plan`: JSON for programs, a table for people, one-line errors."""

from __future__ import annotations

import json

import pytest

from gpufleet import cli


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert cli.main(["plan", *args, "-o", "json"]) == 0
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
