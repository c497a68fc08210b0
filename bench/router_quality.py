"""Routing quality on a simulated mixed fleet: round-robin vs least-request vs cost.

Starts a fleet of ``gpufleet sim`` replicas (one model, several GPU generations, each
priced per GPU-hour) with ``gpufleet sim fleet``, generates one trace per seed mixing
short chat, code, long context, shared system prompts and multi-turn sessions (the
load generator sends ``x-session-id``), and replays each trace through a fresh
``gpufleet router`` per strategy, each on a fresh fleet (the simulators keep their
prefix caches, so a strategy that replayed a trace after another on the same fleet
would find its shared prompts and sessions cached): round-robin, least-request, and
cost with each objective (``cost:balanced``, ``cost:cost``, ``cost:latency``), the
router told the trace's class SLOs. Prints per strategy the mean and spread (min-max)
over the seeds of goodput (requests within their class SLO), interactive SLO
attainment, p99 TTFT, tokens/s and dollars per million completion tokens (the router's
own accounting: GPU-seconds of each request x price), writes
bench/out/router_quality.json.

Then the same strategies on the same trace against a fleet with hidden per-replica
variation the router is not told about: every replica's step time multiplied by a
seeded draw in [1, 1 + spread] and one H100 throttled to ``--throttle`` (2 = half
speed), each router first learning for ``--warmup-s`` seconds of another trace of the
same mix. ``--strategies`` limits the strategies run, ``--fleets`` the fleets
(``clean``, ``hidden``). Each run also records every router's per-endpoint throughput
weights and request counts every 5 s (``weights_over_time``: how learning moved them)
and its SLO misses by the GPU generation that served and the bound missed (``misses``;
the router's debug headers name the generation), and at the end each endpoint's learned
SLO margin from /stats (``slo_margins``).

    .venv/bin/python bench/router_quality.py [--b200 1 --h100 2 --a100 4]
        [--requests 300 --rate 12] [--seeds 7,8,9] [--spread 0.1 --throttle 2 --warmup-s 60]
        [--strategies cost:cost,least-request] [--fleets clean,hidden] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gpufleet.loadgen import client, report, trace

MODEL = "llama-3.1-8b"
OUT = Path(__file__).parent / "out" / "router_quality.json"
STRATEGIES = ("round-robin", "least-request", "cost:balanced", "cost:cost", "cost:latency")
# $ per GPU-hour, round figures of the order of cloud on-demand prices (assumed, not
# quoted): a B200 hour costs about twice an H100's and five times an A100-40GB's.
PRICES = {"B200": 6.0, "H100-80GB": 2.9, "A100-40GB": 1.2}
# The trace's class SLOs (gpufleet.loadgen.trace.DEFAULT_SLOS), told to the router.
CLASSES = [
    {"name": "interactive", "priority": 100, "slo": {"ttftMillis": 1000, "tpotMillis": 100}},
    {"name": "batch", "priority": 10, "slo": {"endToEndSeconds": 120},
     "preferredGenerations": ["A100-80GB", "A100-40GB", "L40S"]},
]  # fmt: skip


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the simulator fleet did not start")
        time.sleep(0.2)


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit("the router exited")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the router never became ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _router_config(backends: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
    # Debug headers name the generation that served each answer (the misses by GPU).
    name, _, goal = strategy.partition(":")
    policy: dict[str, Any] = {"strategy": name, "requestClasses": CLASSES}
    if goal:
        policy["objective"] = goal
    priced = [b | {"costPerGpuHour": PRICES[b["gpu"]]} for b in backends]
    return {"backends": priced, "policy": policy, "debugHeaders": True}


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


class WeightLog:
    """Polls the router's /stats every ``every_s``: per endpoint, its throughput weight and
    requests so far (how the learned weights and the shares moved)."""

    def __init__(self, url: str, every_s: float = 5.0) -> None:
        self.url, self.every_s = url, every_s
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                endpoints = _stats(self.url)["endpoints"]
            except OSError:
                continue
            self.rows.append({
                "t": round(time.monotonic() - self._start, 1),
                "weights": {e["id"]: e["throughput_weight"] for e in endpoints if "gpu" in e},
                "requests": {e["id"]: e["requests"] for e in endpoints if "gpu" in e},
            })  # fmt: skip

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.rows


def run_strategy(
    strategy: str,
    backends: list[dict[str, Any]],
    loaded: trace.Trace,
    work: Path,
    warmup: trace.Trace | None = None,
) -> dict[str, Any]:
    cfg = work / f"router-{strategy.replace(':', '-')}.yaml"
    cfg.write_text(yaml.safe_dump(_router_config(backends, strategy)))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, proc)
        weights = WeightLog(url)
        if warmup is not None:
            asyncio.run(client.replay(warmup, target=url, model=MODEL, concurrency=512,
                                      timeout_s=600))  # fmt: skip
        results, duration = asyncio.run(
            client.replay(loaded, target=url, model=MODEL, concurrency=512, timeout_s=600)
        )
        stats = _stats(url)
        timeline = weights.stop()
    finally:
        _stop(proc)
    summary = report.summarize(results, slos=loaded.slos, duration_s=duration)
    summary["router_generations"] = stats["generations"]
    summary["router_triggers"] = stats["routing"]["triggers"]
    summary["dollars_per_million_tokens"] = _per_million(stats["cost"])
    summary["weights_over_time"] = timeline
    summary["misses"] = _misses(results, loaded.slos)
    summary["slo_margins"] = {
        e["id"]: e.get("slo_margin") for e in stats["endpoints"] if "slo_margin" in e
    }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--b200", type=int, default=1)
    parser.add_argument("--h100", type=int, default=2)
    parser.add_argument("--a100", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument("--seeds", default="7,8,9", help="one trace per seed")
    parser.add_argument("--spread", type=float, default=0.1)
    parser.add_argument("--throttle", type=float, default=2.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--strategies", default="")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--fleets", default="clean", help="clean, hidden or both")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = [trace.TraceSpec(
        seed=seed, requests=args.requests, rate=args.rate, arrival="poisson",
        mix={"chat": 0.6, "code": 0.2, "long": 0.2}, tenants=4, batch_share=0.2,
        system_prompts=4, session_share=0.3,
    ) for seed in seeds]  # fmt: skip
    traces = [trace.generate(spec) for spec in specs]
    warm_requests = max(1, int(args.rate * args.warmup_s))
    warmup = trace.generate(dataclasses.replace(specs[0], seed=seeds[0] + 1000,
                                                requests=warm_requests))  # fmt: skip
    strategies = tuple(args.strategies.split(",")) if args.strategies else STRATEGIES
    gpus = (("B200", args.b200), ("H100-80GB", args.h100), ("A100-40GB", args.a100))
    clean = [{"gpu": g, "count": n} for g, n in gpus if n]
    varied = _varied(gpus, spread=args.spread, throttle=args.throttle, seed=seeds[0])
    fleets = args.fleets.split(",")
    results = _run_fleet(clean, strategies, traces, None) if "clean" in fleets else {}
    hidden = _run_fleet(varied, strategies, traces, warmup) if "hidden" in fleets else {}
    print(f"clean fleet, seeds {seeds}, mean [min-max]:")
    _print(results)
    if hidden:
        print(f"hidden variation (spread {args.spread}, one H100 x{args.throttle}, "
              f"{args.warmup_s:.0f} s of learning first):")  # fmt: skip
        _print(hidden)
    kept = {s: round(hidden[s]["mean"]["goodput_share"] / results[s]["mean"]["goodput_share"], 3)
            for s in strategies if s in results and s in hidden
            and results[s]["mean"]["goodput_share"]}  # fmt: skip
    if kept:
        print("SLO attainment kept (hidden / clean):", kept)
    document = {"fleet": clean, "prices": PRICES, "varied_fleet": varied,
                "trace": {"requests": args.requests, "rate": args.rate, "seeds": seeds,
                          "mix": specs[0].mix, "warmup_s": args.warmup_s},
                "results": results, "hidden": hidden, "kept": kept,
                "ratios": _ratios(results)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2))
    print(f"wrote {args.out}")
    return 0


def _varied(
    gpus: tuple[tuple[str, int], ...], *, spread: float, throttle: float, seed: int
) -> list[dict[str, Any]]:
    """One fleet group per replica with its hidden slowdown; the first H100 throttled."""
    draw = random.Random(seed)
    groups: list[dict[str, Any]] = []
    throttled = False
    for gpu, count in gpus:
        for _ in range(count):
            slowdown = 1 + draw.uniform(0, spread)
            if gpu == "H100-80GB" and not throttled:
                slowdown, throttled = throttle, True
            groups.append({"gpu": gpu, "count": 1, "args": ["--slowdown", f"{slowdown:.3f}"]})
    return groups


def _run_fleet(
    replicas: list[dict[str, Any]],
    strategies: tuple[str, ...],
    traces: list[trace.Trace],
    warmup: trace.Trace | None,
) -> dict[str, dict[str, Any]]:
    """Per strategy: each seed's summary (``runs``) and their ``mean`` and ``spread``.
    The seeds run in the outer loop, so a slow spell of the shared machine hits every
    strategy of one seed rather than every seed of one strategy."""
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n, loaded in enumerate(traces, 1):
            for s in strategies:
                # A fresh fleet per run: the simulators keep their prefix caches, so a
                # strategy replaying a trace after another would find its shared
                # prompts and sessions already cached.
                started = time.monotonic()
                sims, backends = _start_fleet(replicas, work)
                try:
                    runs[s].append(run_strategy(s, backends, loaded, work, warmup))
                finally:
                    _stop(sims)
                print(f"trace {n}/{len(traces)} {s}: {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
    return {s: {"runs": r, "mean": _mean(r), "spread": _spread(r)} for s, r in runs.items()}


FIGURES = ("goodput_per_s", "goodput_share", "interactive", "p99_ttft_s", "output_tokens_per_s",
           "dollars_per_million_tokens")  # fmt: skip


def _figures(summary: dict[str, Any]) -> dict[str, float | None]:
    classes = summary["classes"]
    return {
        "goodput_per_s": summary["goodput_per_s"],
        "goodput_share": summary["goodput_share"],
        "interactive": classes.get("interactive", {}).get("goodput_share"),
        "p99_ttft_s": summary["ttft_s"]["p99"],
        "output_tokens_per_s": summary["output_tokens_per_s"],
        "dollars_per_million_tokens": summary["dollars_per_million_tokens"],
    }


def _mean(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in FIGURES:
        values = [v for r in runs if (v := _figures(r)[name]) is not None]
        out[name] = round(statistics.fmean(values), 4) if values else None
    return out


def _spread(runs: list[dict[str, Any]]) -> dict[str, list[float] | None]:
    out: dict[str, list[float] | None] = {}
    for name in FIGURES:
        values = [v for r in runs if (v := _figures(r)[name]) is not None]
        out[name] = [round(min(values), 4), round(max(values), 4)] if values else None
    return out


def _per_million(cost: dict[str, dict[str, Any]]) -> float | None:
    """Dollars per million completion tokens over every generation the router used."""
    dollars = sum(row["dollars"] for row in cost.values())
    tokens = sum(row["completion_tokens"] for row in cost.values())
    return round(dollars / tokens * 1e6, 4) if tokens else None


def _start_fleet(
    replicas: list[dict[str, Any]], work: Path, attempts: int = 3
) -> tuple[subprocess.Popen[bytes], list[dict[str, Any]]]:
    """The simulator fleet and its backends; another base port when one is taken (the
    machine is shared, and a free port now may be another process's a moment later)."""
    for attempt in range(attempts):
        fleet = {
            "model": MODEL, "basePort": _port() // 100 * 100 % 40000 + 20000, "speed": 1,
            "maxModelLen": 32768, "replicas": replicas,
        }  # fmt: skip
        (work / "fleet.yaml").write_text(yaml.safe_dump(fleet))
        out = work / "backends.yaml"
        out.unlink(missing_ok=True)
        sims = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "sim", "fleet", "--fleet",
             str(work / "fleet.yaml"), "--out", str(out)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_file(out, sims)
        except SystemExit:
            _stop(sims)
            if attempt == attempts - 1:
                raise
            continue
        return sims, yaml.safe_load(out.read_text())["backends"]
    raise AssertionError("unreachable")


def _misses(results: list[report.Result], slos: Any) -> dict[str, dict[str, int]]:
    """SLO misses per GPU generation that served, by the bound missed."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        slo = slos.get(r.klass, trace.Slo())
        if report.meets(r, slo):
            continue
        bounds = (("ttft", slo.ttft_s, r.ttft_s), ("tpot", slo.tpot_s, r.tpot_s),
                  ("e2e", slo.e2e_s, r.e2e_s))  # fmt: skip
        missed = [n for n, bound, v in bounds if bound > 0 and (v is None or v > bound)]
        row = out.setdefault(r.gpu or "error", {})
        for name in missed or ["error"]:
            row[name] = row.get(name, 0) + 1
    return out


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each strategy's mean goodput/s and dollars per million tokens over
    least-request's."""
    base = results.get("least-request")
    if base is None:
        return {}
    out = {}
    for name, row in results.items():
        mine, theirs = row["mean"], base["mean"]
        out[name] = {
            key: round(mine[key] / theirs[key], 3) if mine[key] and theirs[key] else None
            for key in ("goodput_per_s", "dollars_per_million_tokens")
        }
    return out


def _print(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'strategy':14s} {'goodput/s':>17s} {'goodput':>17s} {'interactive':>17s} "
          f"{'p99 TTFT ms':>17s} {'tok/s':>17s} {'$/Mtok':>17s}")  # fmt: skip
    for name, row in results.items():
        cells = []
        for key in FIGURES:
            mean, spread = row["mean"][key], row["spread"][key]
            scale = (
                1000
                if key == "p99_ttft_s"
                else 100
                if key in {"goodput_share", "interactive"}
                else 1
            )
            if mean is None or spread is None:
                cells.append(f"{'-':>17s}")
                continue
            low, high = (v * scale for v in spread)
            cells.append(f"{mean * scale:7.2f} [{low:.1f}-{high:.1f}]".rjust(17))
        print(f"{name:14s} " + " ".join(cells))
    print("ratios over least-request (goodput/s, $/Mtok):", _ratios(results))


if __name__ == "__main__":
    sys.exit(main())
