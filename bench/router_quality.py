"""Routing quality on a simulated mixed fleet: round-robin vs least-request vs cost.

Starts a fleet of ``gpufleet sim`` replicas (one model, several GPU generations) with
``gpufleet sim fleet``, generates one seeded trace mixing short chat, code, long
context and shared system prompts, and replays the identical trace through a fresh
``gpufleet router`` per strategy. Prints goodput (requests within their class SLO),
p99 TTFT, tokens/s and per-class goodput, writes bench/out/router_quality.json.

    .venv/bin/python bench/router_quality.py [--b200 1 --h100 2 --a100 4]
        [--requests 300 --rate 12] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gpufleet.loadgen import client, report, trace

MODEL = "llama-3.1-8b"
OUT = Path(__file__).parent / "out" / "router_quality.json"
STRATEGIES = ("round-robin", "least-request", "cost")


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
    return {"backends": backends, "policy": {"strategy": strategy}}


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


def run_strategy(
    strategy: str, backends: list[dict[str, Any]], loaded: trace.Trace, work: Path
) -> dict[str, Any]:
    cfg = work / f"router-{strategy}.yaml"
    cfg.write_text(yaml.safe_dump(_router_config(backends, strategy)))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, proc)
        results, duration = asyncio.run(
            client.replay(loaded, target=url, model=MODEL, concurrency=512, timeout_s=600)
        )
        stats = _stats(url)
    finally:
        _stop(proc)
    summary = report.summarize(results, slos=loaded.slos, duration_s=duration)
    summary["router_generations"] = stats["generations"]
    summary["router_triggers"] = stats["routing"]["triggers"]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--b200", type=int, default=1)
    parser.add_argument("--h100", type=int, default=2)
    parser.add_argument("--a100", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    spec = trace.TraceSpec(
        seed=args.seed, requests=args.requests, rate=args.rate, arrival="poisson",
        mix={"chat": 0.6, "code": 0.2, "long": 0.2}, tenants=4, batch_share=0.2,
        system_prompts=4, session_share=0.3,
    )  # fmt: skip
    loaded = trace.generate(spec)
    fleet = {
        "model": MODEL, "basePort": _port() // 100 * 100 % 40000 + 20000, "speed": 1,
        "maxModelLen": 32768,
        "replicas": [{"gpu": g, "count": n} for g, n in
                     (("B200", args.b200), ("H100-80GB", args.h100), ("A100-40GB", args.a100))
                     if n],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fleet.yaml").write_text(yaml.safe_dump(fleet))
        out = work / "backends.yaml"
        sims = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "sim", "fleet", "--fleet",
             str(work / "fleet.yaml"), "--out", str(out)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_file(out, sims)
            backends = yaml.safe_load(out.read_text())["backends"]
            results = {s: run_strategy(s, backends, loaded, work) for s in STRATEGIES}
        finally:
            _stop(sims)
    _print(results)
    document = {"fleet": fleet["replicas"], "trace": {"requests": args.requests,
                "rate": args.rate, "seed": args.seed, "mix": spec.mix}, "results": results,
                "ratios": _ratios(results)}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2))
    print(f"wrote {OUT}")
    return 0


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    cost = results["cost"]["goodput_per_s"]

    def ratio(other: str) -> float | None:
        base = results[other]["goodput_per_s"]
        return round(cost / base, 3) if base else None

    return {"cost_vs_round_robin": ratio("round-robin"),
            "cost_vs_least_request": ratio("least-request")}  # fmt: skip


def _print(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'strategy':14s} {'goodput/s':>9s} {'goodput':>8s} {'p99 TTFT':>9s} "
          f"{'tok/s':>8s} {'interactive':>11s} {'batch':>6s} {'errors':>6s}")  # fmt: skip
    for name, s in results.items():
        classes = s["classes"]
        p99 = s["ttft_s"]["p99"]
        print(
            f"{name:14s} {s['goodput_per_s']:9.2f} {s['goodput_share']:8.1%} "
            f"{(p99 or 0) * 1000:8.0f}ms {s['output_tokens_per_s']:8.0f} "
            f"{classes.get('interactive', {}).get('goodput_share', 0):11.1%} "
            f"{classes.get('batch', {}).get('goodput_share', 0):6.1%} "
            f"{sum(s['errors'].values()):6d}"
        )
    print("ratios:", _ratios(results))


if __name__ == "__main__":
    sys.exit(main())
