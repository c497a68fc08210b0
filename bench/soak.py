"""Soak: many requests through ``gpufleet router`` over three simulators that fail.

Three ``gpufleet sim`` processes (``die_after_chunks`` cuts ``--die-share`` of their
streams mid-way) behind one ``gpufleet router`` process. ``--concurrency`` clients send
``--requests`` chat requests (70 % streamed); ``--abort-share`` of them are abandoned
by their client after 0-30 ms. At 30 % of the run one simulator is killed (SIGKILL), at
60 % it is started again on the same ports. Every request must end in a 200 that
finished (JSON, or a stream ending ``[DONE]``), an explicit error (an error status with
OpenAI's error JSON, or a stream ending with an error event), or the client's own
abort: a request that ends any other way — a dropped connection, a stream that just
stops, no answer within 60 s — is *lost*. Afterwards the router's in-flight gauges must
be back to 0 and its RSS within ±10 % of what it was after warm-up.

Prints the figures, writes bench/out/soak.json, exits 1 when a check fails.

    .venv/bin/python bench/soak.py [--requests 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

OUT = Path(__file__).parent / "out" / "soak.json"
MODEL = "llama-3.1-8b"
GPUS = ("H100-80GB", "A100-40GB", "H100-80GB")
REQUEST_TIMEOUT_S = 60.0


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} never answered 200 on {url}")


class Sim:
    def __init__(self, gpu: str, speed: float, die_share: float) -> None:
        self.gpu, self.speed, self.die_share = gpu, speed, die_share
        self.port, self.metrics_port = _port(), _port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", self.gpu, "--model", MODEL,
             "--max-model-len", "8192", "--port", str(self.port),
             "--metrics-port", str(self.metrics_port), "--speed", str(self.speed),
             "--load-seconds", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.url + "/health", self.proc, f"simulator {self.gpu}")
        faults = {"die_after_chunks": 3, "die_rate": self.die_share}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.metrics_port}/admin/faults",
            data=json.dumps(faults).encode(), method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=5):
            pass

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _router(sims: list[Sim], directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    raw = {
        "backends": [{"url": s.url, "model": MODEL, "gpu": s.gpu} for s in sims],
        "policy": {},
        "healthCheck": {"intervalSeconds": 0.5},
        "drainSeconds": 5,
    }
    path = directory / "router.yaml"
    path.write_text(yaml.safe_dump(raw))
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(path),
         "--port", str(port), "--log-level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=(directory / "router.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/readyz", proc, "router")
    return proc, url


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


async def _answer(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    """How one request ended: ok, error_<status>, error_mid_stream, or lost_<why>."""
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            if response.status != 200:
                document = await response.json(content_type=None)
                return f"error_{response.status}" if "error" in document else "lost_bad_error"
            if not body["stream"]:
                document = await response.json()
                return "ok" if document.get("choices") else "lost_empty_answer"
            last = b""
            async for line in response.content:
                if line.startswith(b"data: "):
                    last = line[6:].strip()
            if last == b"[DONE]":
                return "ok"
            return "error_mid_stream" if last and b'"error"' in last else "lost_stream_stopped"
    except (aiohttp.ClientError, ConnectionError, json.JSONDecodeError) as exc:
        return f"lost_{type(exc).__name__}"


async def _one(
    session: aiohttp.ClientSession, url: str, rng: random.Random, abort_share: float
) -> str:
    stream = rng.random() < 0.7
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"soak {rng.random()}"}],
            "max_tokens": rng.randint(8, 32), "ignore_eos": True, "stream": stream}  # fmt: skip
    abort_after = rng.uniform(0.0, 0.03) if rng.random() < abort_share else None
    task = asyncio.ensure_future(_answer(session, url, body))
    try:
        return await asyncio.wait_for(task, abort_after or REQUEST_TIMEOUT_S)
    except TimeoutError:
        return "aborted" if abort_after is not None else "lost_timeout"


async def _gauges(url: str, timeout_s: float = 15.0) -> dict[str, float]:
    """In flight per endpoint (/stats) and the Prometheus gauge's sum, once settled."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url + "/stats") as response:
                stats = await response.json()
            async with session.get(url + "/metrics") as response:
                text = await response.text()
            in_flight = sum(e.get("in_flight", 0) for e in stats["endpoints"])
            gauge = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("gpufleet_router_in_flight{")
            )
            settled = in_flight == 0 and gauge == 0 and stats["queue"]["waiting"] == 0
            if settled or time.monotonic() > deadline:
                return {"stats_in_flight": in_flight, "gauge_in_flight": gauge,
                        "queue_waiting": stats["queue"]["waiting"],
                        "router_total": stats["total_requests"],
                        "router_outcomes": stats["outcomes"]}  # fmt: skip
            await asyncio.sleep(0.2)


async def soak(args: argparse.Namespace, sims: list[Sim], router: subprocess.Popen[bytes],
               url: str) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    done = 0
    events: dict[str, float] = {}
    rss: dict[str, float] = {}
    warm = max(500, args.requests // 10)
    started = time.monotonic()

    claimed = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, claimed
        while claimed < args.requests:
            claimed += 1
            outcome = await _one(session, url, rng, args.abort_share)
            outcomes[outcome] += 1
            done += 1
            if done == warm:
                rss["after_warmup"] = rss_mib(router.pid)
            if done == int(args.requests * 0.3) and "killed" not in events:
                sims[0].kill()
                events["killed"] = time.monotonic() - started
            if done == int(args.requests * 0.6) and "restarted" not in events:
                events["restarted_at"] = time.monotonic() - started
                await asyncio.to_thread(sims[0].start)
                events["restarted"] = time.monotonic() - started

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    gauges = await _gauges(url)
    rss["end"] = rss_mib(router.pid)
    lost = sum(n for k, n in outcomes.items() if k.startswith("lost"))
    drift = rss["end"] / rss["after_warmup"] - 1
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "abort_share": args.abort_share,
        "die_share": args.die_share,
        "elapsed_s": round(elapsed, 1),
        "requests_per_s": round(args.requests / elapsed, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "lost": lost,
        "events_s": {k: round(v, 1) for k, v in events.items()},
        "gauges_after": gauges,
        "router_rss_mib": {k: round(v, 1) for k, v in rss.items()},
        "rss_drift_percent": round(100 * drift, 1),
        "checks": {
            "no_request_lost": lost == 0,
            "gauges_back_to_0": gauges["gauge_in_flight"] == 0
            and gauges["stats_in_flight"] == 0
            and gauges["queue_waiting"] == 0,
            "rss_within_10_percent": abs(drift) <= 0.10,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--abort-share", type=float, default=0.30)
    parser.add_argument("--die-share", type=float, default=0.05)
    parser.add_argument("--speed", type=float, default=5.0, help="simulator speed-up")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sims = [Sim(gpu, args.speed, args.die_share) for gpu in GPUS]
    router: subprocess.Popen[bytes] | None = None
    try:
        for sim in sims:
            sim.start()
        with tempfile.TemporaryDirectory() as directory:
            router, url = _router(sims, Path(directory))
            result = asyncio.run(soak(args, sims, router, url))
            router.send_signal(signal.SIGTERM)
            result["router_exit"] = router.wait(15)
    finally:
        if router is not None and router.poll() is None:
            router.kill()
        for sim in sims:
            sim.stop()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {os.path.relpath(OUT)}")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
