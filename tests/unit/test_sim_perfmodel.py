"""The performance model against published vLLM measurements, and its shape."""

from __future__ import annotations

import pytest

from gpufleet.hardware import catalog
from gpufleet.sim import calibration, replica


@pytest.mark.parametrize("point", calibration.POINTS, ids=lambda p: p.name)
def test_calibration_point_within_tolerance(point: calibration.Point) -> None:
    predicted = calibration.predict(point)
    error = abs(predicted - point.published) / point.published
    assert error <= point.tolerance, f"{point.name}: {predicted:.4g} vs {point.published:.4g}"


@pytest.mark.parametrize("ratio", calibration.RATIOS, ids=lambda r: r.name)
def test_cross_generation_ratio_within_15_percent(ratio: calibration.Ratio) -> None:
    simulated = calibration.simulate(ratio)
    error = abs(simulated - ratio.published) / ratio.published
    assert error <= 0.15, f"{ratio.name}: simulated {simulated:.3f}x vs {ratio.published:.3f}x"


def test_prompt_processing_uses_each_generation_s_measured_share_of_peak() -> None:
    # One factor for every GPU put H100 prefill at 3.1x the A100's; measured is ~2x.
    a100, h100 = _perf("A100-80GB").perf, _perf("H100-80GB").perf
    assert 1.7 < a100.prefill_seconds(2048) / h100.prefill_seconds(2048) < 2.4


def test_l40s_prompt_processing_is_about_half_an_a100_s() -> None:
    # One factor for every GPU put L40S prefill at 1.16x the A100-80GB's (its data-sheet
    # BF16 peak is higher); MLPerf's Offline ratio to the H100 puts it near half.
    a100, l40s = _perf("A100-80GB").perf, _perf("L40S").perf
    assert 0.45 < a100.prefill_seconds(2048) / l40s.prefill_seconds(2048) < 0.65


@pytest.mark.parametrize(
    ("gpu", "limits"),
    [("H100-80GB", (1024, 16384)), ("B200", (1024, 16384)), ("A100-80GB", (256, 8192)),
     ("L40S", (256, 8192)), ("L4", (256, 8192))],
)  # fmt: skip
def test_offline_engine_limits_follow_vllm_s_llm_class(gpu: str, limits: tuple[int, int]) -> None:
    assert replica.offline_engine_limits(catalog.get(gpu)) == limits


def test_calibrate_command_prints_every_point() -> None:
    from gpufleet.sim import command

    text = command.format_calibration(calibration.table())
    for name in [p.name for p in calibration.POINTS] + [r.name for r in calibration.RATIOS]:
        assert name in text
    assert "OUT OF TOLERANCE" not in text


def test_median_error_is_what_the_docs_report() -> None:
    # docs/simulator.md reports the median error; keep it honest within 0.02.
    assert calibration.median_error() == pytest.approx(0.107, abs=0.02)


def _perf(gpu: str) -> replica.Replica:
    return replica.build(replica.ReplicaSpec("llama-3.1-8b", gpu, 1, max_model_len=8192))


def test_decode_speed_orders_the_generations() -> None:
    order = ["B200", "H200", "H100-80GB", "A100-80GB", "A100-40GB"]
    steps = [_perf(g).perf.decode_seconds(batch=8, context=1024) for g in order]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)


@pytest.mark.parametrize("gpu", ["A100-40GB", "H100-80GB", "B200"])
def test_decode_slows_with_batch_and_context(gpu: str) -> None:
    perf = _perf(gpu).perf
    assert perf.decode_seconds(batch=64, context=1024) > perf.decode_seconds(batch=8, context=1024)
    assert perf.decode_seconds(batch=8, context=8000) > perf.decode_seconds(batch=8, context=1000)


def test_prefill_slows_with_prompt_length_and_is_compute_bound() -> None:
    perf = _perf("H100-80GB").perf
    assert perf.prefill_seconds(4096) > 3 * perf.prefill_seconds(1024)
    assert perf.prefill_seconds(4096) > perf.decode_seconds(batch=1, context=4096)


def test_tensor_parallel_makes_decode_faster_per_step() -> None:
    one = replica.build(replica.ReplicaSpec("llama-3.1-70b", "H100-80GB", 2, max_model_len=8192))
    four = replica.build(replica.ReplicaSpec("llama-3.1-70b", "H100-80GB", 4, max_model_len=8192))
    assert four.perf.decode_seconds(batch=1, context=512) < one.perf.decode_seconds(
        batch=1, context=512
    )


def test_infeasible_replica_says_why() -> None:
    with pytest.raises(replica.ReplicaError, match=r"llama-3\.1-70b"):
        replica.build(replica.ReplicaSpec("llama-3.1-70b", "A100-40GB", 1))
