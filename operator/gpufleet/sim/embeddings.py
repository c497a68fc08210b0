"""``POST /v1/embeddings`` as vLLM's pooling runner serves it, with deterministic vectors.

Each input is tokenized as prompts are (``tokens``), its vector drawn from a random
source seeded by its token ids — equal inputs give equal vectors in every process —
normalized to unit length, ``dimensions`` long (or the model's hidden size, as a
decoder used for embeddings returns). The prompt tokens of all inputs run through the
engine as one prefill, so embeddings take GPU time and show in the engine's metrics;
the fault injection applies as to generation (errors, OOM, hangs).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import Sequence

from aiohttp import web

from gpufleet.sim import faults, protocol, tokens
from gpufleet.sim.engine import Request
from gpufleet.sim.state import SimState


def vector(ids: Sequence[int], dimensions: int) -> list[float]:
    """The unit vector of a token sequence (pure, stable across processes)."""
    rng = random.Random(zlib.crc32(b",".join(str(i).encode() for i in ids)))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def token_ids(item: str | list[int]) -> list[int]:
    return tokens.token_ids(item) if isinstance(item, str) else item


async def serve(request: web.Request, state: SimState) -> web.Response:
    try:
        parsed = protocol.parse_embedding(await request.read())
        await _faults(state)
    except protocol.ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)
    served = state.settings.served_model_name
    if parsed.model != served:
        error = protocol.ApiError(404, f"The model `{parsed.model}` does not exist.", param="model")
        return web.json_response(error.body(), status=404)
    hidden = state.settings.replica.arch.hidden_size
    dimensions = min(parsed.dimensions or hidden, hidden)
    sequences = [token_ids(item) or [0] for item in parsed.inputs()]
    prompt_tokens = sum(len(ids) for ids in sequences)
    request_id = f"embd-{state.rng().getrandbits(64):016x}"
    try:
        await _prefill(state, request_id, prompt_tokens)
    except ValueError as exc:
        return web.json_response(protocol.ApiError(400, str(exc)).body(), status=400)
    body = protocol.embedding_list(
        request_id, served, int(time.time()), [vector(ids, dimensions) for ids in sequences],
        encoding=parsed.encoding_format, prompt_tokens=prompt_tokens,
    )  # fmt: skip
    return web.json_response(body)


async def _faults(state: SimState) -> None:
    decision = faults.decide(state.faults, state.rng())
    if decision.hang_s > 0:
        await asyncio.sleep(decision.hang_s)
    if decision.outcome == "error":
        raise protocol.ApiError(500, "Injected fault: internal server error")
    if decision.outcome == "oom":
        raise protocol.ApiError(500, faults.OOM_MESSAGE)


async def _prefill(state: SimState, request_id: str, prompt_tokens: int) -> None:
    """Run the prompt tokens through the engine (one step of output ends it)."""
    queue = state.runner.submit(Request(request_id, prompt_tokens, 1, (), "stop"))
    try:
        while (await queue.get()).finish_reason is None:
            pass
    finally:
        state.runner.cancel(request_id)
