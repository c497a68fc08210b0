"""The simulator's aiohttp apps: vLLM's OpenAI API and, on a second port, its GPUs.

``create_app(settings)`` builds the API app; its ``cleanup_ctx`` starts the engine loop
and cancels it on shutdown. ``create_dcgm_app(api_app)`` builds the GPU app that reads
the same replica: DCGM-exporter metrics at ``/metrics`` and the GPUs' state as JSON at
``/sim/gpus`` (what the twin's GPU health agent reads: ``gpufleet.gpuagent.twinsource``),
both with the GPU faults applied (``faults``; XID events numbered in order).
Both serve ``/admin/faults`` (GET current, POST merge, DELETE
clear), so faults can be lifted even while the API listener refuses connections.
Handlers translate ``protocol.ApiError`` into vLLM's error JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable

import pydantic
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpufleet.hardware import catalog
from gpufleet.sim import embeddings, faults, metrics, protocol, tokens
from gpufleet.sim.engine import Request, TokenEvent
from gpufleet.sim.faults import FaultConfig
from gpufleet.sim.runner import Runner
from gpufleet.sim.state import STATE, SimSettings, SimState

# Output length when the client sets no max_tokens and no end-of-sequence distribution
# is configured: vLLM would allow the whole remaining context, which no real model
# produces; a bounded default keeps such requests realistic.
DEFAULT_OUTPUT_TOKENS = 256


def create_app(
    settings: SimSettings, *, clock: Callable[[], float] = time.monotonic
) -> web.Application:
    """The API app of one simulated replica."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    vllm_metrics = metrics.VllmMetrics(
        settings.served_model_name, legacy_names=settings.legacy_metric_names
    )

    def slowdown() -> float:
        return state.faults.slowdown

    runner = Runner(
        settings.replica.engine(),
        vllm_metrics,
        speed=settings.speed,
        slowdown=slowdown,
        clock=clock,
    )
    state = SimState(settings, runner, vllm_metrics, settings.faults, int(time.time()))
    if settings.faults.gpu_xid is not None:
        state.record_xid(settings.faults.gpu_xid)
    app[STATE] = state
    app.cleanup_ctx.append(_engine_loop)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/version", _version)
    app.router.add_get("/metrics", _metrics)
    _add_admin(app, state)
    return app


def create_dcgm_app(api_app: web.Application) -> web.Application:
    """The GPU app reading ``api_app``'s replica: DCGM metrics and ``/sim/gpus``."""
    state = api_app[STATE]
    replica = state.settings.replica
    spec = replica.spec
    gpu_name = replica.perf.gpu
    product = _product_name(gpu_name)
    total_mib = _gpu_memory_mib(gpu_name)
    used_mib = int(total_mib * spec.gpu_memory_utilization)

    def read() -> list[metrics.GpuState]:
        base = metrics.gpu_state(
            gpu_name,
            utilization=state.runner.utilization(),
            fb_used_mib=used_mib,
            fb_total_mib=total_mib,
        )
        return metrics.gpu_states(base, gpus=replica.tensor_parallel_size, fault=state.gpu_fault())

    collector = metrics.DcgmCollector(
        product=product,
        hostname=state.settings.hostname,
        read=read,
        uuid_seed=state.settings.gpu_uuid_seed,
    )
    registry = metrics.dcgm_registry(collector)

    async def scrape(request: web.Request) -> web.Response:
        return _exposition(generate_latest(registry))

    async def gpus(request: web.Request) -> web.Response:
        return web.json_response(gpu_document(read(), state, product=product))

    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/sim/gpus", gpus)
    _add_admin(app, state)
    return app


def gpu_document(
    states: list[metrics.GpuState], state: SimState, *, product: str
) -> dict[str, object]:
    """``GET /sim/gpus``: each GPU in ``gpuagent.readings.GpuReading``'s field names, and
    the XID events kept."""
    seed = state.settings.gpu_uuid_seed or state.settings.hostname
    return {
        "gpus": [
            {
                "index": s.index,
                "uuid": metrics.gpu_uuid(seed, s.index),
                "name": product,
                "temperature_c": round(s.temperature_c, 1),
                "memory_used_mib": s.fb_used_mib,
                "memory_total_mib": s.fb_total_mib,
                "utilization_percent": round(s.utilization * 100, 1),
                "power_w": round(s.power_w, 3),
                "ecc_corrected": s.ecc_corrected,
                "ecc_uncorrected": s.ecc_uncorrected,
                "throttle_reasons": s.throttle_reasons,
            }
            for s in states
        ],
        "xids": [{"seq": seq, "gpu": gpu, "xid": xid} for seq, gpu, xid in state.xids],
    }


async def _engine_loop(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[STATE].runner.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _error(exc: protocol.ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


def _exposition(body: bytes) -> web.Response:
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completion")


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def _embeddings(request: web.Request) -> web.Response:
    return await embeddings.serve(request, request.app[STATE])


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = protocol.models_list(
        state.settings.served_model_name,
        max_model_len=state.settings.replica.plan.max_model_len,
        created=state.created,
    )
    return web.json_response(body)


async def _health(request: web.Request) -> web.Response:
    return web.Response(status=503 if request.app[STATE].faults.unhealthy else 200)


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.0.0-gpufleet-sim"})


async def _metrics(request: web.Request) -> web.Response:
    return _exposition(generate_latest(request.app[STATE].vllm.registry))


def _add_admin(app: web.Application, state: SimState) -> None:
    async def get(request: web.Request) -> web.Response:
        return web.json_response(state.faults.model_dump())

    async def post(request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            state.set_faults(state.faults.merged(changes))
            if changes.get("gpu_xid") is not None:
                state.record_xid(int(changes["gpu_xid"]))
        except (ValueError, pydantic.ValidationError) as exc:
            return _error(protocol.ApiError(400, f"invalid fault config: {exc}"))
        return web.json_response(state.faults.model_dump())

    async def delete(request: web.Request) -> web.Response:
        state.set_faults(FaultConfig())
        return web.json_response(state.faults.model_dump())

    app.router.add_get("/admin/faults", get)
    app.router.add_post("/admin/faults", post)
    app.router.add_delete("/admin/faults", delete)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    reply: protocol.Reply
    request: Request
    stream: bool
    include_usage: bool
    die_after_chunks: int | None


async def _generate(request: web.Request, kind: protocol.Kind) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        job = await _admit(request, state, kind)
    except protocol.ApiError as exc:
        return _error(exc)
    try:
        queue = state.runner.submit(job.request)
    except ValueError as exc:
        return _error(protocol.ApiError(400, str(exc)))
    try:
        if job.stream:
            return await _stream(request, job, queue)
        return await _collect(job, queue)
    finally:
        state.runner.cancel(job.request.request_id)


async def _admit(request: web.Request, state: SimState, kind: protocol.Kind) -> _Job:
    """Parse, validate and apply faults; the engine request to run, or ``ApiError``."""
    parsed = protocol.parse(kind, await request.read())
    served = state.settings.served_model_name
    if parsed.model != served:
        raise protocol.ApiError(404, f"The model `{parsed.model}` does not exist.", param="model")
    rng = state.rng()
    decision = faults.decide(state.faults, rng)
    if decision.hang_s > 0:
        await asyncio.sleep(decision.hang_s)
    if decision.outcome == "error":
        raise protocol.ApiError(500, "Injected fault: internal server error")
    if decision.outcome == "oom":
        raise protocol.ApiError(500, faults.OOM_MESSAGE)
    ids = _prompt_ids(parsed)
    output, reason = _output_length(parsed, len(ids), state, rng)
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    reply = protocol.Reply(kind, f"{prefix}-{rng.getrandbits(64):016x}", served, int(time.time()))
    hashes = tokens.block_hashes(ids, state.settings.replica.engine_config().block_size)
    options = parsed.stream_options
    return _Job(
        reply=reply,
        request=Request(reply.request_id, len(ids), output, hashes, reason),
        stream=parsed.stream,
        include_usage=bool(options and options.include_usage),
        die_after_chunks=decision.die_after_chunks,
    )


def _prompt_ids(parsed: protocol.CompletionRequest | protocol.ChatRequest) -> list[int]:
    if isinstance(parsed, protocol.ChatRequest):
        text = tokens.render_chat([(m.role, m.text()) for m in parsed.messages])
        return tokens.token_ids(text)
    prompt = parsed.prompt
    if isinstance(prompt, str):
        ids = tokens.token_ids(prompt)
    elif all(isinstance(p, int) for p in prompt):
        ids = [int(p) for p in prompt]
    else:
        ids = tokens.token_ids("".join(str(p) for p in prompt))
    return ids or [0]


def _output_length(
    parsed: protocol.CompletionRequest | protocol.ChatRequest,
    prompt_tokens: int,
    state: SimState,
    rng: random.Random,
) -> tuple[int, str]:
    """Tokens to generate and the finish reason; ``ApiError`` if the context overflows."""
    max_len = state.settings.replica.plan.max_model_len
    if isinstance(parsed, protocol.ChatRequest):
        requested = parsed.requested_max_tokens
    else:
        requested = parsed.max_tokens
    if prompt_tokens >= max_len or (requested and prompt_tokens + requested > max_len):
        raise protocol.context_error(
            requested=requested or 1, prompt=prompt_tokens, max_model_len=max_len
        )
    limit = requested or max_len - prompt_tokens
    median = state.settings.eos_median_tokens
    if median > 0 and not parsed.ignore_eos:
        # Output lengths of chat traces are roughly log-normal (docs/simulator.md).
        drawn = max(1, round(rng.lognormvariate(math.log(median), 0.8)))
        return (drawn, "stop") if drawn < limit else (limit, "length")
    if requested:
        return requested, "length"
    return min(limit, DEFAULT_OUTPUT_TOKENS), "stop"


async def _collect(job: _Job, queue: asyncio.Queue[TokenEvent]) -> web.Response:
    pieces: list[str] = []
    while True:
        event = await queue.get()
        pieces.append(tokens.word(event.index))
        if event.finish_reason is not None:
            body = job.reply.full(
                "".join(pieces), event.finish_reason, job.request.prompt_tokens, len(pieces)
            )
            return web.json_response(body)


async def _stream(
    request: web.Request, job: _Job, queue: asyncio.Queue[TokenEvent]
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    chunks = 0
    if job.reply.kind == "chat":
        chunks = await _send(request, response, job, chunks, job.reply.role_chunk())
    generated = 0
    while True:
        event = await queue.get()
        generated += 1
        chunk = job.reply.token_chunk(tokens.word(event.index), event.finish_reason)
        chunks = await _send(request, response, job, chunks, chunk)
        if event.finish_reason is not None:
            break
    if job.include_usage:
        usage = job.reply.usage_chunk(job.request.prompt_tokens, generated)
        await response.write(protocol.sse(usage))
    await response.write(protocol.SSE_DONE)
    await response.write_eof()
    return response


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    job: _Job,
    chunks: int,
    payload: dict[str, object],
) -> int:
    """Write one chunk, or cut the connection where the die-after fault says so."""
    if job.die_after_chunks is not None and chunks >= job.die_after_chunks:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("injected fault: stream cut")
    await response.write(protocol.sse(payload))
    return chunks + 1


def _product_name(gpu: str) -> str:
    """The NVML product name DCGM reports as ``modelName`` (GFD label with spaces)."""
    return catalog.get(gpu).primary_product.replace("-", " ")


def _gpu_memory_mib(gpu: str) -> int:
    return catalog.get(gpu).memory_mib
