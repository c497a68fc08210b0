"""Rendered configurations beyond the protocol suite's that real vLLM also runs on CPU.

The protocol suite's server runs the tiny Llama's pool as rendered by default (bf16,
TP 1). Here the same pool with fp16 weights, an fp8 KV cache and TP 2 (one core per
rank: ``VLLM_CPU_OMP_THREADS_BIND=0|1``) is started once and must answer. What the CPU
build cannot run is said in README.md: ``--quantization fp8`` (no CPU kernel) and
``awq``/``gptq`` (they need a quantized checkpoint; the parser tests cover their flags).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.vllm import corpus, servers

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


async def test_fp16_fp8_kv_cache_tp2_runs_and_answers(vllm_python: Path, tiny_model: Path) -> None:
    pool = corpus.tiny_pool(
        model={"dtype": "fp16", "kvCacheDtype": "fp8"}, variant={"tensorParallelSize": 2}
    )
    args = [*corpus.tiny_args(tiny_model, pool), *servers.CPU_FLAGS]
    assert {"--kv-cache-dtype", "fp8", "--dtype", "float16"} <= set(args)
    server = servers.start_vllm(vllm_python, args, threads_bind="0|1")
    try:
        body = {"model": servers.MODEL, "prompt": "hello", "max_tokens": 4}
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/v1/completions", json=body) as response,
        ):
            assert response.status == 200
            answer = await response.json()
        assert answer["usage"]["completion_tokens"] == 4
    finally:
        server.stop()
