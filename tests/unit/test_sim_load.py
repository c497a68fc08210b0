"""Model-load time of a simulated replica (table-driven), and where it is set."""

from __future__ import annotations

import argparse

import pytest

from gpufleet.hardware import catalog, overrides
from gpufleet.planning import get_model, plan_variant
from gpufleet.sim import command, fleet, replica

STARTUP = replica.ENGINE_STARTUP_SECONDS


def load(model: str, gpu: str, tp: int, dtype: str = "bf16") -> float:
    plan = plan_variant(
        get_model(model), catalog.get(gpu), dtype=dtype, tensor_parallel_size=tp,
        max_model_len=8192,
    )  # fmt: skip
    assert plan.feasible, plan.reason
    return replica.load_seconds(plan, catalog.get(gpu))


@pytest.mark.parametrize(
    ("shorter", "longer"),
    [
        # Bigger models load longer on the same GPUs.
        (("llama-3.2-1b", "H100-80GB", 1), ("llama-3.1-8b", "H100-80GB", 1)),
        (("llama-3.1-8b", "H200", 2), ("llama-3.1-70b", "H200", 2)),
        (("qwen2.5-32b", "A100-80GB", 4), ("qwen2.5-72b", "A100-80GB", 4)),
        # Slower generations (their hosts) load the same shard longer.
        (("llama-3.1-8b", "L40S", 1), ("llama-3.1-8b", "L4", 1)),
        (("llama-3.1-8b", "A100-40GB", 1), ("llama-3.1-8b", "A10G", 1)),
        (("llama-3.1-8b", "H100-80GB", 1), ("llama-3.1-8b", "A100-80GB", 1)),
        (("llama-3.1-70b", "B200", 2), ("llama-3.1-70b", "H200", 2)),
        # Tensor parallelism splits the shard each GPU loads.
        (("llama-3.1-70b", "H100-80GB", 4), ("llama-3.1-70b", "H100-80GB", 2)),
        (("llama-3.1-70b", "H100-80GB", 8), ("llama-3.1-70b", "H100-80GB", 4)),
        (("mixtral-8x7b", "A100-80GB", 4), ("mixtral-8x7b", "A100-80GB", 2)),
    ],
)
def test_load_time_orders(shorter: tuple[str, str, int], longer: tuple[str, str, int]) -> None:
    assert load(*shorter) < load(*longer)


@pytest.mark.parametrize(
    ("model", "gpu", "tp", "dtype"),
    [
        ("llama-3.1-8b", "H100-80GB", 1, "bf16"),
        ("llama-3.1-70b", "A100-80GB", 4, "bf16"),
        ("llama-3.1-70b", "H100-80GB", 2, "fp8"),
        ("qwen2.5-7b", "L4", 1, "awq"),
        ("llama-3.1-405b", "B200", 8, "bf16"),
    ],
)
def test_load_time_is_startup_plus_the_shard_at_the_generations_rate(
    model: str, gpu: str, tp: int, dtype: str
) -> None:
    plan = plan_variant(get_model(model), catalog.get(gpu), dtype=dtype, tensor_parallel_size=tp)
    shard_s = plan.weights_bytes / tp / (catalog.get(gpu).weight_load_gbps * 1e9)
    assert replica.load_seconds(plan, catalog.get(gpu)) == pytest.approx(STARTUP + shard_s, 1e-6)
    assert replica.load_seconds(plan, catalog.get(gpu), startup_seconds=0) == pytest.approx(
        shard_s, 1e-6
    )


@pytest.mark.parametrize(
    ("model", "gpu", "tp", "low", "high"),
    [
        # From a warm local disk: an 8B model in under a minute and a half on any
        # generation; 70B at TP 4 on A100s in about a minute.
        ("llama-3.1-8b", "L4", 1, 45.0, 90.0),
        ("llama-3.1-8b", "H100-80GB", 1, 30.0, 60.0),
        ("llama-3.1-70b", "A100-80GB", 4, 40.0, 90.0),
        ("llama-3.1-405b", "H200", 8, 60.0, 180.0),
    ],
)
def test_load_time_is_in_the_range_vllm_shows(
    model: str, gpu: str, tp: int, low: float, high: float
) -> None:
    assert low <= load(model, gpu, tp) <= high


def test_fp8_weights_load_faster_than_bf16() -> None:
    assert load("llama-3.1-70b", "H100-80GB", 4, "fp8") < load("llama-3.1-70b", "H100-80GB", 4)
    assert load("llama-3.1-8b", "H100-80GB", 1, "fp8") < load("llama-3.1-8b", "H100-80GB", 1)


def test_every_generation_has_a_load_rate_and_an_added_one_gets_the_default() -> None:
    assert all(0 < gpu.weight_load_gbps < 10 for gpu in catalog.GPUS.values())
    added = overrides.apply_overrides(
        overrides.parse_overrides(
            "gpus: [{name: RTX-6000-ADA, memoryMib: 49140, bandwidthGbps: 960, "
            "bf16Tflops: 364, products: [NVIDIA-RTX-6000-Ada-Generation]}]"
        )
    )
    assert added["RTX-6000-ADA"].weight_load_gbps == catalog.DEFAULT_WEIGHT_LOAD_GBPS


def sim_flags(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_replica_arguments(parser)
    command.add_fault_arguments(parser)
    return parser.parse_args(["--gpu", "H100-80GB", "--model", "llama-3.1-8b", *flags])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), load("llama-3.1-8b", "H100-80GB", 1)),
        (("--load-seconds", "0"), 0.0),
        (("--load-seconds", "12.5"), 12.5),
    ],
)
def test_sim_load_seconds_flag(flags: tuple[str, ...], expected: float) -> None:
    settings = command.settings_from(sim_flags("--max-model-len", "8192", *flags))
    assert settings.load_seconds == pytest.approx(expected)


def test_sim_rejects_a_negative_load_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        sim_flags("--load-seconds", "-1")
    assert "argument --load-seconds: must be 0 or more, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "expected"), [({}, "0.0"), ({"loadSeconds": 45}, "45.0")])
def test_fleet_replicas_skip_the_load_unless_asked(extra: dict[str, object], expected: str) -> None:
    doc = {"model": "llama-3.1-8b", "replicas": [{"gpu": "H100-80GB", "count": 2}], **extra}
    members = fleet.plan(fleet.FleetFile.model_validate(doc))
    for member in members:
        argv = list(member.argv)
        assert argv[argv.index("--load-seconds") + 1] == expected
