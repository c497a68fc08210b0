"""Replays a trace against an OpenAI-compatible URL and records what each request saw.

Requests start at their trace times (scaled by ``time_scale``), at most ``concurrency``
in flight (a request waits for a slot; its latency counts from when it is sent). Each is
a streamed chat completion with ``stream_options.include_usage`` and vLLM's
``ignore_eos`` so output lengths follow the trace; the tenant goes in ``user`` (and, when
``api_keys`` maps it to a key, in ``Authorization: Bearer``, which is how the router
identifies tenants), the class in the router's ``x-gpufleet-class`` header and the
session in ``x-session-id`` (the trace's seed and session number: every turn of a
multi-turn conversation carries the same id, so session affinity can act). TTFT is the
first chunk with content, TPOT the mean gap between later content chunks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping

import aiohttp

from gpufleet.loadgen import trace
from gpufleet.loadgen.report import Result

Progress = Callable[[int, int], None]
# The router's default RoutingPolicy classHeader.
CLASS_HEADER = "x-gpufleet-class"
# The router's default RoutingPolicy affinity.session.header.
SESSION_HEADER = "x-session-id"
# Set by the router when its debugHeaders are on: the GPU generation that served.
GPU_HEADER = "x-gpufleet-gpu"


async def replay(
    loaded: trace.Trace,
    *,
    target: str,
    model: str,
    concurrency: int = 64,
    time_scale: float = 1.0,
    timeout_s: float = 300.0,
    progress: Progress | None = None,
    api_keys: Mapping[str, str] | None = None,
) -> tuple[list[Result], float]:
    """Send every request of ``loaded``; the results and the run's wall duration."""
    url = target.rstrip("/") + "/v1/chat/completions"
    slots = asyncio.Semaphore(concurrency)
    results: list[Result] = []
    total = len(loaded.requests)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(request: trace.TraceRequest) -> None:
            async with slots:
                result = await _send(session, url, model, loaded, request, started, api_keys or {})
            results.append(result)
            if progress is not None:
                progress(len(results), total)

        tasks = []
        for request in loaded.requests:
            delay = started + request.at_s * time_scale - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request)))
        await asyncio.gather(*tasks)
    results.sort(key=lambda r: r.index)
    return results, time.monotonic() - started


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    loaded: trace.Trace,
    request: trace.TraceRequest,
    started: float,
    api_keys: Mapping[str, str],
) -> Result:
    body = {
        "model": model,
        "messages": trace.messages(loaded.spec.seed, request, loaded.spec),
        "max_tokens": request.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "user": request.tenant,
    }
    headers = {
        CLASS_HEADER: request.klass,
        SESSION_HEADER: f"{loaded.spec.seed}-{request.session}",
    }
    if request.tenant in api_keys:
        headers["Authorization"] = f"Bearer {api_keys[request.tenant]}"
    sent = time.monotonic()
    base = Result(request.index, request.klass, request.tenant, sent - started, status=0)
    try:
        async with session.post(url, json=body, headers=headers) as response:
            base = dataclasses.replace(base, gpu=response.headers.get(GPU_HEADER, ""))
            if response.status != 200:
                await response.read()
                return dataclasses.replace(base, status=response.status)
            return await _read_stream(response, base, sent)
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        return dataclasses.replace(base, error=type(exc).__name__)


async def _read_stream(response: aiohttp.ClientResponse, base: Result, sent: float) -> Result:
    stamps: list[float] = []
    completion_tokens = 0
    done = False
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            completion_tokens = int(chunk["usage"].get("completion_tokens", 0))
        for choice in chunk.get("choices", []):
            text = (choice.get("delta") or {}).get("content") or choice.get("text")
            if text:
                stamps.append(time.monotonic())
    now = time.monotonic()
    ttft = stamps[0] - sent if stamps else None
    tpot = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
    return dataclasses.replace(
        base,
        status=200,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=now - sent,
        output_tokens=completion_tokens or len(stamps),
        error="" if done else "stream ended before [DONE]",
    )
