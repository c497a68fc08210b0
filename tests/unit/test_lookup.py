"""Names people type: GPU generations and catalog models found forgivingly, with a
"did you mean" on a typo and the candidates of an ambiguous name."""

from __future__ import annotations

import pytest

from gpufleet import cli, lookup
from gpufleet.hardware import catalog
from gpufleet.planning import models


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("H100-80GB", "H100-80GB"),
        ("h100-80gb", "H100-80GB"),
        ("H100", "H100-80GB"),
        ("h200", "H200"),
        ("l40s", "L40S"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("nvidia-a100-sxm4-40gb", "A100-40GB"),
    ],
)
def test_gpu_names_in_any_case_alias_or_unique_start(typed: str, expected: str) -> None:
    assert catalog.resolve(typed).name == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("qwen/qwen2.5-7b-instruct", "qwen2.5-7b"),
        ("mistral", "mistral-7b"),
    ],
)
def test_model_names_in_any_case_hf_id_or_unique_start(typed: str, expected: str) -> None:
    assert models.resolve(typed).name == expected


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("A100", "did you mean A100-40GB or A100-80GB?"),
        ("H10", "did you mean H100-80GB?"),
        ("B20O", "did you mean B200?"),
    ],
)
def test_unknown_or_ambiguous_gpu_says_what_was_meant(typed: str, hint: str) -> None:
    with pytest.raises(catalog.UnknownGpu) as info:
        catalog.resolve(typed)
    assert f"unknown GPU generation {typed!r}; {hint} known: A10G" in str(info.value)


def test_a_model_typo_is_answered_with_the_closest_names() -> None:
    with pytest.raises(models.UnknownModel) as info:
        models.resolve("lama-3.1-8b")
    assert "did you mean llama-3.1-8b or" in str(info.value)
    with pytest.raises(models.UnknownModel) as info:
        models.resolve("gpt-5")
    assert "did you mean" not in str(info.value) and "qwen2.5-72b" in str(info.value)


def test_exact_lookups_stay_exact() -> None:
    with pytest.raises(catalog.UnknownGpu):
        catalog.get("H100")
    with pytest.raises(models.UnknownModel):
        models.get("mistral")


def test_resolve_prefers_an_exact_name_to_a_prefix() -> None:
    assert lookup.resolve("L4", ["L4", "L4-24GB"]) == "L4"
    with pytest.raises(lookup.Ambiguous) as info:
        lookup.resolve("l4", ["L4-a", "L4-b"])
    assert info.value.candidates == ("L4-a", "L4-b")


def test_plan_takes_forgiving_names(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--model", "Meta-Llama/Llama-3.1-8B-Instruct", "--gpu", "h100", "-o", "json"]
    assert cli.main(argv) == 0
    assert '"gpu": "H100-80GB"' in capsys.readouterr().out
    assert cli.main(["plan", "--model", "llama-3.1-8b", "--gpu", "H20"]) == 2
    assert "did you mean H200?" in capsys.readouterr().err


def test_a_fleet_file_takes_forgiving_gpu_names() -> None:
    from gpufleet.sim import fleet, replica

    document = {"model": "Llama-3.1-8B", "replicas": [{"gpu": "h100"}, {"gpu": "l40s"}]}
    members = fleet.plan(fleet.FleetFile.model_validate(document))
    assert [m.gpu for m in members] == ["H100-80GB", "L40S"]
    assert members[0].argv[:3] == ("sim", "--gpu", "H100-80GB")
    ambiguous = {"model": "llama-3.1-8b", "replicas": [{"gpu": "A100"}]}
    with pytest.raises(replica.ReplicaError, match="did you mean A100-40GB or A100-80GB"):
        fleet.plan(fleet.FleetFile.model_validate(ambiguous))
