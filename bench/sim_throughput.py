"""How much load one ``gpufleet sim`` process sustains, and what it costs idle.

For each speed: start one simulator (llama-3.1-8b on H100-80GB), measure its CPU while
idle, then drive it with C concurrent streaming clients (closed loop, 128-token prompts,
64 output tokens) for a fixed time and record completed requests/s, streamed tokens/s,
the simulator's CPU share and how far its streams lag the model (achieved vs modelled
per-request latency). Prints a table and writes bench/out/sim_throughput.json.

    .venv/bin/python bench/sim_throughput.py [--speeds 1,10,100] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

MODEL = "llama-3.1-8b"
OUT = Path(__file__).parent / "out" / "sim_throughput.json"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(speed: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", "H100-80GB", "--model", MODEL,
         "--max-model-len", "4096", "--port", str(port), "--speed", str(speed),
         "--load-seconds", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start")


async def _load(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    body = {"model": MODEL, "prompt": "word " * 128, "max_tokens": 64, "stream": True}
    done = tokens = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done, tokens
        while time.monotonic() < deadline:
            start = time.monotonic()
            async with session.post(url + "/v1/completions", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: {"):
                        tokens += 1
            done += 1
            latencies.append(time.monotonic() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests_per_s": done / elapsed,
        "tokens_per_s": tokens / elapsed,
        "p50_latency_s": latencies[len(latencies) // 2] if latencies else 0.0,
    }


def measure(speed: float, concurrency: int, seconds: float) -> dict[str, float]:
    proc, url = _start(speed)
    try:
        time.sleep(1.0)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(3.0)
        idle = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        figures = asyncio.run(_load(url, concurrency, seconds))
        busy = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    return {"speed": speed, "concurrency": concurrency, "idle_cpu": idle, "load_cpu": busy,
            **figures}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", default="1,10,100")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rows = [measure(float(s), args.concurrency, args.seconds) for s in args.speeds.split(",")]
    print(f"{'speed':>6} {'streams':>7} {'req/s':>8} {'tok/s':>9} {'p50 s':>7} "
          f"{'idle CPU':>8} {'load CPU':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['speed']:>6g} {r['concurrency']:>7d} {r['requests_per_s']:>8.1f} "
              f"{r['tokens_per_s']:>9.0f} {r['p50_latency_s']:>7.3f} {r['idle_cpu']:>8.1%} "
              f"{r['load_cpu']:>8.1%}")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": MODEL, "gpu": "H100-80GB", "rows": rows}, indent=2))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
