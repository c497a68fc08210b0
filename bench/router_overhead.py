"""Router overhead: the router in front of a no-op upstream vs the upstream directly.

Starts a no-op OpenAI upstream (answers at once; streams N chunks back to back) and a
``gpufleet router`` in front of it, each its own process on uvloop. In one run it
measures, through the router and directly: latency percentiles at low concurrency
(added p50/p99), the maximum non-streaming requests/s at high concurrency, and
streaming with up to 1,000 concurrent streams (errors and throughput). Prints a table,
writes bench/out/router_overhead.json.

    .venv/bin/python bench/router_overhead.py [--seconds 8] [--streams 1000]

``--upstream`` runs only the no-op upstream (used by this script itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

OUT = Path(__file__).parent / "out" / "router_overhead.json"
MODEL = "noop"
CHUNK = (
    b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":" tok"}}]}\n\n'
)
REPLY = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()  # fmt: skip


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=REPLY, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(int(body.get("max_tokens", 16))):
            await response.write(CHUNK)
            await asyncio.sleep(0.01)
        await response.write(b"data: [DONE]\n\n")
        return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())  # fmt: skip


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"process for {url} exited")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


async def _latency(url: str, n: int, concurrency: int) -> dict[str, float]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while len(samples) < n:
                start = time.perf_counter()
                async with session.post(url + "/v1/chat/completions", json=body) as r:
                    await r.read()
                    assert r.status == 200
                samples.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.sort()
    return {"p50_ms": 1000 * samples[len(samples) // 2],
            "p99_ms": 1000 * samples[int(len(samples) * 0.99)],
            "mean_ms": 1000 * statistics.fmean(samples)}  # fmt: skip


async def _throughput(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    done, errors = 0, 0
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                async with session.post(url + "/v1/chat/completions", json=body) as r:
                    await r.read()
                    done, errors = done + (r.status == 200), errors + (r.status != 200)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"requests_per_s": done / elapsed, "errors": errors}


async def _streams(url: str, streams: int, tokens: int) -> dict[str, float]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": tokens, "stream": True}  # fmt: skip
    ok, errors, chunks = 0, 0, 0
    connector = aiohttp.TCPConnector(limit=streams)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            nonlocal ok, errors, chunks
            try:
                async with session.post(url + "/v1/chat/completions", json=body) as r:
                    seen = 0
                    async for line in r.content:
                        seen += line.startswith(b"data: ")
                    chunks += seen
                    ok, errors = ok + (seen == tokens + 1), errors + (seen != tokens + 1)
            except (aiohttp.ClientError, TimeoutError):
                errors += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.monotonic() - started
    return {"streams": streams, "completed": ok, "errors": errors, "seconds": elapsed,
            "chunks_per_s": chunks / elapsed}  # fmt: skip


async def _measure(url: str, seconds: float, streams: int) -> dict[str, Any]:
    await _latency(url, 200, 1)  # warm up connections and code paths
    return {
        "latency_c1": await _latency(url, 2000, 1),
        "latency_c16": await _latency(url, 4000, 16),
        "throughput_c64": await _throughput(url, seconds, 64),
        "streams": await _streams(url, streams, 50),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream(args.upstream)
        return 0
    up_port, router_port = _port(), _port()
    up_url, router_url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{router_port}"
    config = {
        "backends": [{"url": up_url, "model": MODEL, "gpu": "H100-80GB"}],
        "policy": {"strategy": "cost"},
        "limits": {"maxInFlightPerEndpoint": 100000},
    }
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "router.yaml"
        path.write_text(yaml.safe_dump(config))
        try:
            procs.append(subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port)]))
            _wait(up_url + "/health", procs[-1])
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(path),
                 "--port", str(router_port)], stdout=subprocess.DEVNULL))  # fmt: skip
            _wait(router_url + "/readyz", procs[-1])
            direct = asyncio.run(_measure(up_url, args.seconds, args.streams))
            routed = asyncio.run(_measure(router_url, args.seconds, args.streams))
        finally:
            for proc in procs:
                _stop(proc)
    document = {"direct": direct, "router": routed, "added": _added(direct, routed)}
    _print(document)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2))
    print(f"wrote {OUT}")
    return 0


def _added(direct: dict[str, Any], routed: dict[str, Any]) -> dict[str, float]:
    return {
        f"{c}_{q}": routed[c][q] - direct[c][q]
        for c in ("latency_c1", "latency_c16")
        for q in ("p50_ms", "p99_ms")
    }


def _print(doc: dict[str, Any]) -> None:
    for name in ("direct", "router"):
        d = doc[name]
        s = d["streams"]
        print(
            f"{name:7s} c1 p50 {d['latency_c1']['p50_ms']:.2f} ms p99 "
            f"{d['latency_c1']['p99_ms']:.2f} ms | c16 p50 {d['latency_c16']['p50_ms']:.2f} ms "
            f"p99 {d['latency_c16']['p99_ms']:.2f} ms | {d['throughput_c64']['requests_per_s']:.0f}"
            f" req/s | {s['streams']} streams: {s['completed']} ok, {s['errors']} errors, "
            f"{s['chunks_per_s']:.0f} chunks/s"
        )
    print("added:", {k: round(v, 3) for k, v in doc["added"].items()})


if __name__ == "__main__":
    sys.exit(main())
