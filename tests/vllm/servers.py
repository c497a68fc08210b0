"""The two servers of the protocol suite as real processes: real vLLM and ``gpufleet sim``.

``Server`` is one OpenAI-compatible server on a free loopback port, serving the model
``tiny`` with a 512-token context (the tiny Llama's; the simulator is told the same), its
vLLM metrics at ``/metrics`` on the same port. Real vLLM runs the command line the
operator renders for the tiny Llama's ModelPool (``corpus.tiny_args``). ``stop``
interrupts it and waits, then kills what is left: a vLLM server holds ~4.6 GiB and must
never outlive its test.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from gpufleet.ports import free_port

MODEL = "tiny"
CONTEXT = 512
# What real vLLM on CPU adds to the operator's command line: no graph capture (minutes
# on CPU, and vLLM's CPU platform captures none anyway).
CPU_FLAGS = ("--enforce-eager",)


def vllm_env(*, threads_bind: str = "nobind") -> dict[str, str]:
    """The environment of a vLLM process here: offline, one OpenMP thread, small KV cache.

    ``VLLM_CPU_OMP_THREADS_BIND`` ``nobind`` leaves threads unpinned (one engine on a
    shared machine); TP 2 needs one core per rank, ``0|1``.
    """
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "VLLM_CPU_OMP_THREADS_BIND": threads_bind,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


@dataclasses.dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log and self.log.exists() else ""


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_ready(server: Server, *, timeout_s: float) -> Server:
    """``server`` once ``/v1/models`` answers 200; stops it and fails if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise AssertionError(f"{server.kind} exited {code}:\n{server.log_tail()}")
        if _status(server.url + "/v1/models") == 200:
            return server
        time.sleep(0.5)
    server.stop()
    raise AssertionError(f"{server.kind} not ready in {timeout_s:.0f}s:\n{server.log_tail()}")


def start_vllm(
    python: Path,
    args: Sequence[str],
    *,
    threads_bind: str = "nobind",
    timeout_s: float = 420.0,
) -> Server:
    """``vllm serve ARGS`` from the vLLM environment on a free loopback port, ready.

    ``--host`` and ``--port`` are appended (argparse: the last one wins). Minutes on a
    busy machine: the engine compiles nothing (``--enforce-eager`` belongs in ``args``)
    but imports torch and profiles the model.
    """
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpufleet-vllm-{port}.log"
    argv = [str(python.parent / "vllm"), "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=vllm_env(threads_bind=threads_bind)
        )
    return wait_ready(Server("vllm", port, proc, log), timeout_s=timeout_s)


def start_sim(*, extra: Sequence[str] = ()) -> Server:
    """``gpufleet sim`` standing in for the tiny model: same name and context, fast."""
    port = free_port()
    argv = [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", "H100-80GB",
            "--model", "llama-3.1-8b", "--served-model-name", MODEL,
            "--max-model-len", str(CONTEXT), "--port", str(port),
            "--metrics-port", str(free_port()), "--speed", "20", "--load-seconds", "0",
            *extra]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_ready(Server("sim", port, proc), timeout_s=30)
