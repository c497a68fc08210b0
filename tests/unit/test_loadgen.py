"""Trace generation, the trace file, and the run summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from gpufleet.loadgen import client, report, trace, workloads
from gpufleet.ports import free_port


def _spec(**kw: object) -> trace.TraceSpec:
    base: dict[str, object] = {"seed": 7, "requests": 300, "rate": 10.0,
                               "mix": {"chat": 0.6, "code": 0.3, "long": 0.1}}  # fmt: skip
    return trace.TraceSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_same_seed_same_trace_and_different_seed_differs() -> None:
    assert trace.generate(_spec()) == trace.generate(_spec())
    assert trace.generate(_spec()).requests != trace.generate(_spec(seed=8)).requests


def test_trace_round_trips_through_its_file(tmp_path: Path) -> None:
    generated = trace.generate(_spec())
    trace.save(generated, tmp_path / "t.jsonl")
    assert trace.load(tmp_path / "t.jsonl") == generated


def test_bad_trace_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    trace.save(trace.generate(_spec(requests=3)), path)
    path.write_text(path.read_text() + '{"index": "x"}\n')
    with pytest.raises(ValueError, match=":5:"):
        trace.load(path)


def test_arrivals_are_sorted_and_rate_is_roughly_met() -> None:
    requests = trace.generate(_spec(session_share=0.0)).requests
    times = [r.at_s for r in requests]
    assert times == sorted(times)
    assert 300 / 10 * 0.7 < times[-1] < 300 / 10 * 1.3


def test_step_arrivals_speed_up_halfway() -> None:
    requests = trace.generate(_spec(arrival="step", step_factor=4.0, session_share=0.0)).requests
    first, second = requests[149].at_s, requests[-1].at_s - requests[150].at_s
    assert second < first / 2


def test_sessions_resend_the_conversation() -> None:
    generated = trace.generate(_spec(session_share=1.0, mean_turns=3.0))
    later = next(r for r in generated.requests if r.turn == 2)
    earlier = next(r for r in generated.requests if r.session == later.session and r.turn == 1)
    new = trace.messages(generated.spec.seed, later, generated.spec)
    old = trace.messages(generated.spec.seed, earlier, generated.spec)
    assert new[: len(old)] == old
    assert new[0]["role"] == "system"


def test_chat_lengths_follow_the_published_medians() -> None:
    generated = trace.generate(_spec(requests=2000, mix={"chat": 1.0}, session_share=0.0))
    inputs = [r.input_tokens for r in generated.requests]
    outputs = [r.output_tokens for r in generated.requests]
    chat = workloads.get("chat")
    assert report.percentile(inputs, 50) == pytest.approx(chat.input.median, rel=0.1)
    assert report.percentile(outputs, 50) == pytest.approx(chat.output.median, rel=0.1)


def test_summary_counts_goodput_per_class_slo() -> None:
    slos = {"interactive": trace.Slo(ttft_s=1.0), "batch": trace.Slo(e2e_s=10.0)}
    results = [
        report.Result(0, "interactive", "t", 0.0, 200, 0.5, 0.01, 2.0, 100),
        report.Result(1, "interactive", "t", 0.1, 200, 1.5, 0.01, 3.0, 100),
        report.Result(2, "batch", "t", 0.2, 200, 5.0, 0.01, 9.0, 100),
        report.Result(3, "batch", "t", 0.3, 503),
    ]
    summary = report.summarize(results, slos=slos, duration_s=2.0)
    assert summary["succeeded"] == 3
    assert summary["goodput_share"] == 0.5
    assert summary["goodput_per_s"] == 1.0
    assert summary["errors"] == {"503": 1}
    assert summary["output_tokens_per_s"] == 150.0
    assert report.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_generation_shares_from_the_router_header() -> None:
    from gpufleet.loadgen import report

    results = [
        report.Result(0, "interactive", "t", 0.0, status=200, output_tokens=30, gpu="H200"),
        report.Result(1, "interactive", "t", 0.0, status=200, output_tokens=10, gpu="H100-80GB"),
        report.Result(2, "interactive", "t", 0.0, status=200, output_tokens=10, gpu="H200"),
        report.Result(3, "interactive", "t", 0.0, status=200, output_tokens=99),
    ]
    shares = report.generations(results)
    assert shares["H200"]["request_share"] == 2 / 3
    assert shares["H200"]["token_share"] == 40 / 50
    assert shares["H100-80GB"]["output_tokens"] == 10
    assert report.generations(results[3:]) == {}
    text = report.render(report.summarize(results, slos={}, duration_s=1.0))
    assert "H200" in text and "of output tokens" in text


def test_generation_shares_from_the_routers_served_table() -> None:
    from gpufleet.loadgen import report

    served = {
        "interactive": {"H200": {"requests": 3, "completion_tokens": 30},
                        "A100-40GB": {"requests": 1, "completion_tokens": 10}},
        "batch": {"A100-40GB": {"requests": 4, "completion_tokens": 60}},
    }  # fmt: skip
    shares = report.generations_served(served)
    assert list(shares) == ["A100-40GB", "H200"]
    assert shares["A100-40GB"]["requests"] == 5 and shares["A100-40GB"]["output_tokens"] == 70
    assert shares["A100-40GB"]["request_share"] == 5 / 8
    assert shares["H200"]["token_share"] == 30 / 100
    assert shares["A100-40GB"]["classes"] == {
        "interactive": {"requests": 1, "output_tokens": 10},
        "batch": {"requests": 4, "output_tokens": 60},
    }
    [a100, h200] = report.render_generations(shares)
    assert h200.startswith("  H200 ")
    assert a100.endswith("(batch 4, interactive 1)") and "62.5% of requests" in a100
    assert report.generations_served({}) == {}


async def test_replay_names_class_and_session_in_headers() -> None:
    seen: list[tuple[str, str]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers["x-gpufleet-class"], request.headers["x-session-id"]))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    loaded = trace.generate(_spec(requests=40, rate=2.0, session_share=0.5))
    try:
        target = f"http://127.0.0.1:{port}"
        await client.replay(loaded, target=target, model="m", time_scale=0.01)
    finally:
        await runner.cleanup()
    expected = {(r.klass, f"7-{r.session}") for r in loaded.requests}
    assert set(seen) == expected
    assert len({sid for _, sid in seen}) < len(seen)  # later turns share their session's id
