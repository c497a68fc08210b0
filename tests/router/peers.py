"""Test peers for the router: simulator processes, an in-process router, helpers.

``Sim`` is a real ``gpufleet sim`` process on a free loopback port (reaped on
``stop``); ``serve_router`` runs the router app in-process on 127.0.0.1 with handler
cancellation on, as ``gpufleet router`` does; ``prometheus`` is a real Prometheus
scraping given targets (the router's signals source), ``stats_until`` polls /stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gpufleet.devcluster import build
from gpufleet.ports import free_port
from gpufleet.router import app, config

MODEL = "llama-3.1-8b"


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclasses.dataclass
class Sim:
    gpu: str
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    tp: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def backend(self) -> dict[str, object]:
        return {"url": self.url, "model": MODEL, "gpu": self.gpu, "tensorParallelSize": self.tp,
                "metricsUrl": self.metrics_url}  # fmt: skip

    def faults(self, **changes: object) -> None:
        """Set faults through the metrics port (it works while the API refuses)."""
        data = json.dumps(changes).encode()
        method = "POST" if changes else "DELETE"
        request = urllib.request.Request(
            self.metrics_url + "/admin/faults", data=data if changes else None, method=method
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sim(gpu: str, *, speed: float = 20.0, tp: int = 1, extra: tuple[str, ...] = ()) -> Sim:
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", gpu, "--model", MODEL,
         "--tp", str(tp), "--max-model-len", "16384", "--port", str(port),
         "--metrics-port", str(metrics_port), "--speed", str(speed), "--load-seconds", "0",
         *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    sim = Sim(gpu, port, metrics_port, proc, tp)
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"simulator exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if get_status(sim.url + "/health") == 200:
                return sim
        time.sleep(0.1)
    sim.stop()
    raise AssertionError("simulator never became healthy")


@contextlib.contextmanager
def prometheus(
    targets: Sequence[str], workdir: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Prometheus (the one ``gpufleet dev-cluster build`` builds) scraping
    ``targets`` (host:port) every second; its URL and process, stopped at the end."""
    binary = build.binary_path("prometheus")
    if not binary.is_file():
        pytest.fail(
            f"prometheus is not built ({binary}): run `gpufleet dev-cluster build` "
            "(`make test` does this first)",
            pytrace=False,
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "sims", "static_configs": [{"targets": list(targets)}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            assert proc.poll() is None, "prometheus exited"
            with contextlib.suppress(OSError):
                if get_status(url + "/-/ready") == 200:
                    break
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


async def stats_until(
    session: aiohttp.ClientSession, url: str, check: Any, timeout_s: float = 30.0
) -> dict[str, Any]:
    """The router's /stats once ``check(stats)`` holds, or the last one after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(url + "/stats") as r:
            stats: dict[str, Any] = await r.json()
        if check(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


def router_config(backends: list[dict[str, object]], **policy: Any) -> dict[str, Any]:
    return {"backends": backends, "policy": policy, "debugHeaders": True,
            "healthCheck": {"intervalSeconds": 0.5}}  # fmt: skip


@contextlib.asynccontextmanager
async def serve_router(raw: dict[str, Any]) -> AsyncIterator[tuple[str, web.Application]]:
    application = app.create_app(config.parse(raw))
    runner = web.AppRunner(application, handler_cancellation=True, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", application
    finally:
        await runner.cleanup()


def chat(content: str = "hello", max_tokens: int = 8, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, **extra}  # fmt: skip


async def stream_events(response: aiohttp.ClientResponse) -> list[bytes]:
    """The ``data:`` payloads of an SSE response, in order."""
    events = []
    async for raw in response.content:
        line = raw.strip()
        if line.startswith(b"data: "):
            events.append(line[6:])
    return events


async def settled(url: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """/stats once nothing is in flight (bounded wait)."""
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + timeout_s
        while True:
            async with session.get(url + "/stats") as response:
                stats: dict[str, Any] = await response.json()
            busy = [e for e in stats["endpoints"] if e.get("in_flight")]
            if not busy or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.05)
