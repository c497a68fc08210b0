"""``gpufleet bench``: ``load`` replays or generates a trace against a URL; ``trace``
only writes one.

``gpufleet bench load --target URL --model M`` generates a trace from the flags (or
replays ``--trace FILE``), shows its progress on stderr (a bar on a terminal, plain lines
into a pipe: ``progress``) and then prints p50/p90/p99 of TTFT, TPOT and
end-to-end latency, tokens/s, goodput and errors, and writes ``summary.json``,
``requests.jsonl`` and ``chart.png`` into ``--out-dir``. Exit code 0 when the run
completed (even with failed requests), 2 for bad flags or an unreadable trace.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from gpufleet import cliargs
from gpufleet.loadgen import chart, client, progress, report, trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="{load,trace}", required=True)
    load = sub.add_parser(
        "load",
        help="run a trace against an OpenAI-compatible URL",
        description="Replay a trace (--trace) or one generated from the flags against an "
        "OpenAI-compatible URL; print latency percentiles, tokens/s and goodput, and write "
        "summary.json, requests.jsonl and chart.png.",
    )
    load.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    load.add_argument("--model", required=True, help="model name sent in every request")
    load.add_argument("--trace", type=Path, help="replay this trace file")
    load.add_argument("--save-trace", type=Path, help="also write the generated trace")
    load.add_argument(
        "--concurrency", type=cliargs.positive_int, default=64, help="requests in flight at most"
    )
    load.add_argument(
        "--time-scale", type=cliargs.positive_float, default=1.0, help="stretch arrival times"
    )
    load.add_argument(
        "--timeout", type=cliargs.positive_float, default=300.0, help="seconds per request"
    )
    load.add_argument(
        "--out-dir", type=Path, default=Path("bench/out/load"), help="where results are written"
    )
    load.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    _add_spec_arguments(load, "trace generation (ignored with --trace)")
    only = sub.add_parser(
        "trace",
        help="generate a trace file only",
        description="Write a trace generated from the flags; replay it with "
        "`gpufleet bench load --trace FILE`.",
    )
    only.add_argument("--out", type=Path, required=True, help="trace file to write")
    _add_spec_arguments(only, "trace generation")


def _add_spec_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    group = parser.add_argument_group(title)
    group.add_argument("--seed", type=int, default=0, help="random seed of the trace")
    group.add_argument(
        "--requests", type=cliargs.positive_int, default=200, help="requests in the trace"
    )
    group.add_argument(
        "--rate", type=cliargs.positive_float, default=5.0, help="mean requests per second"
    )
    group.add_argument(
        "--arrival",
        choices=["poisson", "bursty", "step"],
        default="poisson",
        help="arrival process",
    )
    group.add_argument(
        "--step-factor",
        type=cliargs.positive_float,
        default=3.0,
        help="with --arrival step: the rate multiplier of the second half",
    )
    group.add_argument("--mix", default="chat=1", help="workload weights, e.g. chat=0.7,code=0.3")
    group.add_argument(
        "--tenants", type=cliargs.positive_int, default=4, help="tenants the requests come from"
    )
    group.add_argument(
        "--batch-share", type=cliargs.share, default=0.2, help="share of batch-class requests"
    )
    group.add_argument(
        "--system-prompts",
        type=cliargs.non_negative_int,
        default=4,
        help="distinct shared system prompts (prefix-cache reuse)",
    )
    group.add_argument(
        "--session-share",
        type=cliargs.share,
        default=0.3,
        help="share of requests that continue a session",
    )


def spec_from(args: argparse.Namespace) -> trace.TraceSpec:
    """The trace spec the flags describe; ``ValueError`` for a bad flag."""
    mix: dict[str, float] = {}
    for part in args.mix.split(","):
        name, _, weight = part.partition("=")
        mix[name.strip()] = float(weight or 1)
    return trace.TraceSpec(
        seed=args.seed,
        requests=args.requests,
        rate=args.rate,
        arrival=args.arrival,
        step_factor=args.step_factor,
        mix=mix,
        tenants=args.tenants,
        batch_share=args.batch_share,
        system_prompts=args.system_prompts,
        session_share=args.session_share,
    )


def run(args: argparse.Namespace) -> int:
    try:
        loaded = trace.load(args.trace) if getattr(args, "trace", None) else None
        loaded = loaded or trace.generate(spec_from(args))
    except (OSError, ValueError) as exc:
        print(f"gpufleet bench: {exc}", file=sys.stderr)
        return 2
    if args.bench_command == "trace":
        trace.save(loaded, args.out)
        print(f"wrote {len(loaded.requests)} requests to {args.out}")
        return 0
    if args.save_trace:
        trace.save(loaded, args.save_trace)
    with progress.shown(quiet=args.quiet) as report_progress:
        results, duration = asyncio.run(
            client.replay(
                loaded,
                target=args.target,
                model=args.model,
                concurrency=args.concurrency,
                time_scale=args.time_scale,
                timeout_s=args.timeout,
                progress=report_progress,
            )
        )
    summary = report.summarize(results, slos=loaded.slos, duration_s=duration)
    summary["target"] = args.target
    print("\n" + report.render(summary))
    _write(args.out_dir, summary, results, title=f"{args.model} @ {args.target}")
    return 0


def _write(
    out: Path, summary: dict[str, object], results: list[report.Result], *, title: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = "\n".join(json.dumps(dataclasses.asdict(r)) for r in results)
    (out / "requests.jsonl").write_text(rows + "\n")
    if not chart.available():
        print(f"wrote {out}/summary.json, requests.jsonl (no chart.png: {chart.MISSING})")
        return
    chart.draw(results, out / "chart.png", title=title)
    print(f"wrote {out}/summary.json, requests.jsonl, chart.png")
