"""Real vLLM for the contract tests: its interpreter, the tiny model, a running server.

Real vLLM lives in its own environment, installed by ``make test-vllm``
(``gpufleet.devcluster.vllmenv``), which runs these tests with ``GPUFLEET_VLLM_PYTHON``
set to that environment's python. Without it every test that asks for ``vllm_python``
is skipped, saying how to run it, so a plain ``pytest`` collects and passes; the
simulator's half of the protocol suite needs no vLLM and always runs.

Real vLLM on CPU takes ~4.6 GiB and every core while it starts: one server per session
(``vllm_server``), one OpenMP thread, a 1 GiB KV cache, stopped at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufleet.devcluster import build
from tests.vllm import corpus, servers

HERE = Path(__file__).parent
PYTHON_ENV = "GPUFLEET_VLLM_PYTHON"
SKIP_REASON = f"real vLLM not installed: `make test-vllm` installs it and sets ${PYTHON_ENV}"


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM environment's interpreter; skips the test when there is none."""
    value = os.environ.get(PYTHON_ENV)
    if not value:
        pytest.skip(SKIP_REASON)
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"${PYTHON_ENV}={value} is not a file")
    return path


def ask_vllm(python: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One request to tests/vllm/probe.py in the vLLM environment (its docstring: format)."""
    done = subprocess.run(
        [str(python), str(HERE / "probe.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=servers.vllm_env(),
        timeout=300,
    )
    if done.returncode != 0:
        raise AssertionError(f"vLLM's parser probe failed:\n{done.stderr[-3000:]}")
    # The answer is the last line: vLLM may log to standard output as it is imported.
    lines = done.stdout.strip().splitlines()
    answer: dict[str, Any] = json.loads(lines[-1] if lines else "")
    return answer


def _model_key() -> str:
    return hashlib.sha256((HERE / "tinymodel.py").read_bytes()).hexdigest()[:12]


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    """The tiny Llama (tests/vllm/tinymodel.py), built once per version of its recipe."""
    target = build.cache_dir() / "vllm" / f"tiny-llama-{_model_key()}"
    if (target / "model.safetensors").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [str(vllm_python), str(HERE / "tinymodel.py"), str(partial)],
        check=True,
        env=servers.vllm_env(),
        timeout=300,
    )
    partial.rename(target)  # whole or not at all: an interrupted build is made again
    return target


@pytest.fixture(scope="session")
def vllm_server(vllm_python: Path, tiny_model: Path) -> Iterator[servers.Server]:
    """Real vLLM serving the tiny model as ``tiny`` for the whole session, started with
    the command line the operator renders for the tiny Llama's ModelPool."""
    args = [*corpus.tiny_args(tiny_model), *servers.CPU_FLAGS]
    server = servers.start_vllm(vllm_python, args)
    try:
        yield server
    finally:
        server.stop()
