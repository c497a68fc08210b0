"""Router overhead: the router in front of a no-op upstream vs the upstream directly,
and the router's CPU per request when requests pile up in its queue.

Arms (``--arms``, both by default):

- ``overhead``: a no-op OpenAI upstream (answers at once; streams N chunks back to back),
  a ``gpufleet router`` in front of it and a minimal aiohttp proxy beside it (reads the
  body, parses its JSON, forwards it: the least a proxy of this kind does), each its own
  process on uvloop. Directly, through the minimal proxy and through the router, in one
  run: latency percentiles at 1 and 16 connections (added p50/p99), non-streaming
  requests/s at 32 and 64 connections, and, directly and through the router, up to
  1,000 concurrent streams (errors and throughput). Then ``--rounds`` short runs at 32
  connections alternating between the minimal proxy and the router: requests/s and
  each process's CPU time per request, router over minimal proxy round by round.
- ``overload``: 8 upstreams (one process) that hold every request ``--hold`` seconds,
  behind a router that lets 16 in flight on each, and closed-loop clients enough to
  keep 128 requests in flight and ``--waiting`` more in the router's admission queue
  (each level in turn, on loopback). Once the queue holds them, ``--windows`` windows of
  ``--window`` seconds each: the router process's CPU time (user + system, from /proc)
  over the requests completed in the window, and that figure over the first level's.

Prints a table, writes bench/out/router_overhead.json (``--out``).

    .venv/bin/python bench/router_overhead.py [--seconds 8] [--streams 1000]
    .venv/bin/python bench/router_overhead.py --arms overload [--waiting 10,1000,10000]

``--upstream``, ``--held`` and ``--minimal`` run only the upstreams or the minimal proxy
(used by this script itself).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

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


def minimal(port: int, target: str) -> None:
    """The least an OpenAI proxy does, to compare the router with: read the body and
    parse its JSON, forward it to ``target``, pass the answer back (a stream chunk by
    chunk)."""
    import uvloop
    from aiohttp import web

    http = web.AppKey("http", aiohttp.ClientSession)

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        json.loads(raw)
        headers = {"Content-Type": "application/json"}
        async with request.app[http].post(target + request.path, data=raw, headers=headers) as up:
            if up.content_type != "text/event-stream":
                body = await up.read()
                return web.Response(body=body, status=up.status, content_type=up.content_type)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[http] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[http].close()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())  # fmt: skip


def held(ports: list[int], hold_s: float) -> None:
    """Upstreams on ``ports`` (one process) that answer each request after ``hold_s``."""
    import uvloop
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(hold_s)
        return web.Response(body=REPLY, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()

    uvloop.run(serve())


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
    return {"requests_per_s": done / elapsed, "errors": errors, "seconds": elapsed}


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
    """Latency at 1 and 16 connections, requests/s at 32 and 64, and ``streams``
    concurrent streams (none when 0)."""
    await _latency(url, 200, 1)  # warm up connections and code paths
    found = {
        "latency_c1": await _latency(url, 2000, 1),
        "latency_c16": await _latency(url, 4000, 16),
        "throughput_c32": await _throughput(url, seconds, 32),
        "throughput_c64": await _throughput(url, seconds, 64),
    }
    return found | ({"streams": await _streams(url, streams, 50)} if streams else {})


# The overload arm: endpoints x slots each are in flight, the rest wait in the router.
ENDPOINTS, SLOTS = 8, 16
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
PROBE = aiohttp.ClientTimeout(total=20)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sample(NamedTuple):
    """The router at one moment: its CPU time so far and, from its /stats (-1 when it
    did not answer within the probe's timeout: a router that falls behind must not
    stall the arm), the requests it has served, queued and has in flight."""

    at: float
    cpu_s: float
    served: int
    waiting: int
    in_flight: int


async def _sample(session: aiohttp.ClientSession, url: str, pid: int) -> Sample:
    at, cpu = time.monotonic(), cpu_seconds(pid)
    try:
        async with session.get(url + "/stats") as r:
            stats = await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return Sample(at, cpu, -1, -1, -1)
    busy = sum(e["in_flight"] for e in stats["endpoints"])
    return Sample(at, cpu, stats["outcomes"].get("success", 0), stats["queue"]["waiting"], busy)


async def _client(
    session: aiohttp.ClientSession, url: str, errors: collections.Counter[str]
) -> None:
    """One closed-loop client: a request, its answer, the next request."""
    while True:
        try:
            async with session.post(url + "/v1/chat/completions", json=BODY) as r:
                await r.read()
                if r.status != 200:
                    errors[str(r.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.5)


async def _level(url: str, pid: int, waiting: int, args: argparse.Namespace) -> dict[str, Any]:
    """Keep ``waiting`` requests queued behind the endpoints' slots; CPU per completion."""
    errors: collections.Counter[str] = collections.Counter()
    clients = ENDPOINTS * SLOTS + waiting
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
            aiohttp.ClientSession(timeout=PROBE) as probe:  # fmt: skip
        started = time.monotonic()
        tasks = []
        for first in range(0, clients, 250):  # a ramp the listen backlog absorbs
            tasks += [asyncio.create_task(_client(session, url, errors))
                      for _ in range(first, min(clients, first + 250))]  # fmt: skip
            await asyncio.sleep(0.1)
        for _ in range(240):  # at most two minutes
            if (await _sample(probe, url, pid)).waiting >= waiting * 0.97:
                break
            await asyncio.sleep(0.5)
        ramp_s = time.monotonic() - started
        await asyncio.sleep(2.0)
        samples = [await _sample(probe, url, pid)]
        for _ in range(args.windows):
            await asyncio.sleep(args.window)
            samples.append(await _sample(probe, url, pid))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await _drained(url)
    return _windows(waiting, samples, ramp_s=ramp_s, errors=dict(errors))


async def _drained(url: str) -> None:
    """Until the router has let go of every cancelled request (at most a minute)."""
    async with aiohttp.ClientSession(timeout=PROBE) as probe:
        for _ in range(120):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with probe.get(url + "/stats") as r:
                    stats = await r.json()
                busy = sum(e["in_flight"] for e in stats["endpoints"])
                if stats["queue"]["waiting"] == 0 and busy == 0:
                    return
            await asyncio.sleep(0.5)


def _windows(
    waiting: int, samples: list[Sample], *, ramp_s: float, errors: dict[str, int]
) -> dict[str, Any]:
    """Per window: requests served (by the router's count), CPU per request and share of
    a core, and the queue and requests in flight at its ends (128 in flight whenever
    some wait: no slot stays idle for want of a wake-up)."""
    windows = []
    for before, after in itertools.pairwise(samples):
        done = after.served - before.served
        cpu = after.cpu_s - before.cpu_s
        windows.append({
            "completed": done, "per_s": done / (after.at - before.at),
            "cpu_ms_per_request": 1000 * cpu / max(done, 1),
            "cpu_percent": 100 * cpu / (after.at - before.at),
            "waiting": [before.waiting, after.waiting],
            "in_flight": [before.in_flight, after.in_flight],
        })  # fmt: skip
    per_request = [w["cpu_ms_per_request"] for w in windows]
    return {"waiting_target": waiting, "ramp_s": ramp_s, "errors": errors, "windows": windows,
            "cpu_ms_per_request": statistics.median(per_request),
            "cpu_ms_per_request_range": [min(per_request), max(per_request)]}  # fmt: skip


def overload(args: argparse.Namespace) -> dict[str, Any]:
    ports = [_port() for _ in range(ENDPOINTS)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    config = {
        "backends": [{"url": u, "model": MODEL, "gpu": "H100-80GB"} for u in urls],
        "policy": {"strategy": "cost",
                   "admission": {"queue": {"maxSize": 20000, "timeoutSeconds": 3600}},
                   "failureHandling": {"requestTimeoutSeconds": 3600}},
        "limits": {"maxInFlightPerEndpoint": SLOTS},
    }  # fmt: skip
    upstream_args = ["--held", ",".join(map(str, ports)), "--hold", str(args.hold)]
    levels = []
    with _process(upstream_args, urls), _router(config) as (url, router):
        for waiting in (int(w) for w in args.waiting.split(",")):
            levels.append(asyncio.run(_level(url, router.pid, waiting, args)))
            print(f"{waiting} waiting: {levels[-1]['cpu_ms_per_request']:.2f} ms CPU per request")
    first = levels[0]["cpu_ms_per_request"]
    for level in levels:
        level["vs_first"] = level["cpu_ms_per_request"] / first
    return {"endpoints": ENDPOINTS, "slots": SLOTS, "hold_s": args.hold, "levels": levels}


def _print_overload(doc: dict[str, Any]) -> None:
    print(f"overload: {doc['endpoints']} endpoints x {doc['slots']} slots, "
          f"each request held {doc['hold_s']} s")  # fmt: skip
    for level in doc["levels"]:
        low, high = level["cpu_ms_per_request_range"]
        windows = level["windows"]
        waited = [n for w in windows for n in w["waiting"]]
        busy = [n for w in windows for n in w["in_flight"]]
        rate = statistics.fmean(w["per_s"] for w in windows)
        cpu = statistics.fmean(w["cpu_percent"] for w in windows)
        print(f"  {level['waiting_target']:>6} waiting (seen {min(waited)}-{max(waited)}, "
              f"{min(busy)}-{max(busy)} in flight): {level['cpu_ms_per_request']:.2f} ms CPU "
              f"per request ({low:.2f}-{high:.2f}), {level['vs_first']:.2f}x the first | "
              f"{rate:.1f} req/s, {cpu:.0f} % of a core, ramp {level['ramp_s']:.0f} s, "
              f"errors {level['errors'] or 0}")  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _process(args: list[str], health: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """This script run with ``args`` (upstreams, the minimal proxy), ready once every
    URL in ``health`` answers its /health."""
    proc = subprocess.Popen([sys.executable, __file__, *args])
    try:
        for url in health:
            _wait(url + "/health", proc)
        yield proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def _router(config: dict[str, Any]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``gpufleet router`` process with ``config``: its URL and process."""
    port = _port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "router.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(path),
             "--port", str(port)], stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait(url + "/readyz", proc)
            yield url, proc
        finally:
            _stop(proc)


async def _alternating(
    targets: dict[str, tuple[str, int]], rounds: int, seconds: float
) -> dict[str, Any]:
    """Requests/s at 32 connections and the serving process's CPU per request, target
    after target (name -> URL and pid) for ``rounds`` rounds: on a machine shared with
    other work, alternating short runs compare like with like better than one long run
    each, and CPU per request is what the other work disturbs least."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, pid) in targets.items():
            before = cpu_seconds(pid)
            found = await _throughput(url, seconds, 32)
            done = found["requests_per_s"] * found["seconds"]
            found["cpu_us_per_request"] = 1e6 * (cpu_seconds(pid) - before) / max(done, 1)
            runs[name].append(found)
    return runs


def _versus(runs: dict[str, list[dict[str, float]]], key: str) -> dict[str, Any]:
    """Router over minimal proxy, round by round: median and range."""
    ratios = [r[key] / m[key] for r, m in zip(runs["router"], runs["minimal"], strict=True)]
    return {"median": statistics.median(ratios), "range": [min(ratios), max(ratios)]}


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    up_port = _port()
    up_url = f"http://127.0.0.1:{up_port}"
    config = {
        "backends": [{"url": up_url, "model": MODEL, "gpu": "H100-80GB"}],
        "policy": {"strategy": "cost"},
        "limits": {"maxInFlightPerEndpoint": 100000},
    }
    min_url = f"http://127.0.0.1:{_port()}"
    minimal_args = ["--minimal", min_url.rsplit(":", 1)[1], "--to", up_url]
    with (
        _process(["--upstream", str(up_port)], [up_url]),
        _process(minimal_args, [min_url]) as least_proc,
        _router(config) as (router_url, router_proc),
    ):
        direct = asyncio.run(_measure(up_url, args.seconds, args.streams))
        least = asyncio.run(_measure(min_url, args.seconds, 0))
        routed = asyncio.run(_measure(router_url, args.seconds, args.streams))
        targets = {"minimal": (min_url, least_proc.pid), "router": (router_url, router_proc.pid)}
        runs = asyncio.run(_alternating(targets, args.rounds, args.seconds / 2))
    return {
        "direct": direct, "minimal": least, "router": routed, "added": _added(direct, routed),
        "minimal_added": _added(direct, least), "alternating_c32": runs,
        "router_vs_minimal_c32": _versus(runs, "requests_per_s"),
        "router_vs_minimal_cpu": _versus(runs, "cpu_us_per_request"),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="overhead,overload", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="router vs minimal proxy runs")
    parser.add_argument("--waiting", default="10,1000,10000", help="queue depths, comma-separated")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds an upstream holds one")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per CPU window")
    parser.add_argument("--windows", type=int, default=3, help="windows per queue depth")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--held", help=argparse.SUPPRESS)
    parser.add_argument("--minimal", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minimal:
        minimal(args.minimal, args.to)
        return 0
    if args.upstream:
        upstream(args.upstream)
        return 0
    if args.held:
        held([int(p) for p in args.held.split(",")], args.hold)
        return 0
    arms = args.arms.split(",")
    document: dict[str, Any] = {}
    if "overhead" in arms:
        document |= overhead(args)
        _print(document)
    if "overload" in arms:
        document["overload"] = overload(args)
        _print_overload(document["overload"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2))
    print(f"wrote {args.out}")
    return 0


def _added(direct: dict[str, Any], routed: dict[str, Any]) -> dict[str, float]:
    return {
        f"{c}_{q}": routed[c][q] - direct[c][q]
        for c in ("latency_c1", "latency_c16")
        for q in ("p50_ms", "p99_ms")
    }


def _print(doc: dict[str, Any]) -> None:
    for name in ("direct", "minimal", "router"):
        d = doc[name]
        s = d.get("streams")
        streamed = (f" | {s['streams']} streams: {s['completed']} ok, {s['errors']} errors, "
                    f"{s['chunks_per_s']:.0f} chunks/s") if s else ""  # fmt: skip
        print(
            f"{name:7s} c1 p50 {d['latency_c1']['p50_ms']:.2f} ms p99 "
            f"{d['latency_c1']['p99_ms']:.2f} ms | c16 p50 {d['latency_c16']['p50_ms']:.2f} ms "
            f"p99 {d['latency_c16']['p99_ms']:.2f} ms | {d['throughput_c32']['requests_per_s']:.0f}"
            f" req/s c32, {d['throughput_c64']['requests_per_s']:.0f} c64{streamed}"
        )
    print("added (router):", {k: round(v, 3) for k, v in doc["added"].items()})
    print("added (minimal proxy):", {k: round(v, 3) for k, v in doc["minimal_added"].items()})
    for key, what in (("router_vs_minimal_c32", "requests/s at c32"),
                      ("router_vs_minimal_cpu", "CPU per request")):  # fmt: skip
        low, high = doc[key]["range"]
        print(f"router / minimal proxy, {what}, alternating: {doc[key]['median']:.2f} "
              f"({low:.2f}-{high:.2f})")  # fmt: skip
    for name, runs in doc["alternating_c32"].items():
        cpu = statistics.median(r["cpu_us_per_request"] for r in runs)
        rate = statistics.median(r["requests_per_s"] for r in runs)
        print(f"  {name}: {rate:.0f} req/s, {cpu:.0f} us CPU per request (medians)")


if __name__ == "__main__":
    sys.exit(main())
