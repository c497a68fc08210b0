"""``gpufleet worker [--check-only] -- [vllm serve] VLLM_ARGS…``: check the GPUs, exec vLLM.

The worker image's entrypoint is ``gpufleet worker --``, so a pod's ``args`` are vLLM's
flags (as with vLLM's own image) and ``vllm serve`` is put in front of them; a command
given after ``--`` (``vllm serve …``, ``python -m vllm.entrypoints.openai.api_server …``)
runs as given. Before it execs, the worker reads the GPUs through NVML, compares them
with the pod's claim (``gpufleet.worker.claim``) and refuses to start on a mismatch, so
a pod on the wrong GPU fails at once, naming what it found and what it asked for,
instead of loading weights for minutes and running out of memory or crawling. When
``GPUFLEET_GPU_UUIDS_FILE`` is set (the operator's pods, with the GPU health agent) it
then writes the UUIDs of the GPUs it checked there (``gpufleet.podgpus``): they are
exactly the GPUs the device plugin gave this container, and the agent sidecar, which
NVML shows every GPU of the node, judges only those. A file that cannot be written is
logged and serving goes on (the agent then judges nothing).

Exit status: 2 when the claim cannot be read, 3 on a GPU mismatch, 4 when NVML cannot be
read; otherwise the process becomes vLLM (``os.execvpe``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from gpufleet import logsetup, podgpus
from gpufleet.worker import checks, claim
from gpufleet.worker.inventory import Gpu, Inventory, InventoryError

EXIT_CLAIM = 2
EXIT_MISMATCH = 3
EXIT_NVML = 4
DEFAULT_SERVER = ("vllm", "serve")

log = logging.getLogger("gpufleet.worker")
Exec = Callable[[str, Sequence[str], Mapping[str, str]], object]


def _execvpe(file: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    os.execvpe(file, list(argv), dict(env))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="check the GPUs and print the NCCL environment, then exit instead of starting vLLM",
    )
    logsetup.add_arguments(parser)
    parser.add_argument(
        "server",
        nargs=argparse.REMAINDER,
        help="after --: vLLM's flags (run with `vllm serve`) or a whole vLLM command",
    )


def server_argv(remainder: Sequence[str]) -> list[str]:
    """The command to exec: ``vllm serve`` in front of bare flags (or of nothing)."""
    argv = list(remainder[1:] if remainder[:1] == ["--"] else remainder)
    if not argv or argv[0].startswith("-"):
        return [*DEFAULT_SERVER, *argv]
    return argv


def vllm_flags(argv: Sequence[str]) -> list[str]:
    """The server's own flags: what follows ``serve`` or the ``-m`` module, else all."""
    for marker in ("serve", "-m"):
        if marker in argv:
            return list(argv[argv.index(marker) + 1 :])
    return list(argv[1:])


def _fail(code: int, message: str) -> int:
    print(f"gpufleet worker: {message}", file=sys.stderr)
    return code


def list_gpus(gpus: Sequence[Gpu], env: Mapping[str, str]) -> Path | None:
    """Write the checked GPUs' UUIDs where ``GPUFLEET_GPU_UUIDS_FILE`` says; the file
    written, or None (no variable, or a failure, which is logged)."""
    where = env.get(podgpus.ENV, "").strip()
    if not where:
        return None
    path = Path(where)
    try:
        podgpus.write(path, [g.uuid for g in gpus if g.uuid], writer="gpufleet worker")
    except OSError as exc:
        log.warning("cannot list this pod's GPUs for its health agent in %s: %s", path, exc)
        return None
    return path


def _nvml() -> Inventory:
    from gpufleet.worker.nvml import NvmlInventory  # pynvml only where a GPU is checked

    return NvmlInventory()


def main(
    remainder: Sequence[str],
    *,
    check_only: bool = False,
    inventory: Inventory | None = None,
    environ: Mapping[str, str] | None = None,
    exec_: Exec = _execvpe,
) -> int:
    """Check, then exec the server; returns only on failure or with ``check_only``."""
    env = dict(os.environ if environ is None else environ)
    argv = server_argv(remainder)
    try:
        asked = claim.from_env(env, vllm_flags(argv))
        found = (inventory or _nvml()).gpus()
    except claim.ClaimError as exc:
        return _fail(EXIT_CLAIM, str(exc))
    except InventoryError as exc:
        return _fail(EXIT_NVML, str(exc))
    gpus = checks.visible(found, env.get("CUDA_VISIBLE_DEVICES"))
    findings = checks.check(asked, gpus)
    for warning in findings.warnings:
        log.warning("%s", warning)
    if not findings.ok:
        return _fail(EXIT_MISMATCH, "refusing to start vLLM: " + "; ".join(findings.mismatches))
    list_gpus(gpus, env)
    nccl = checks.nccl_env(asked.gpu_count, env)
    log.info("%d x %s as asked; NCCL %s", len(gpus), asked.generation, nccl or "unchanged")
    if check_only:
        print("\n".join(f"{k}={v}" for k, v in sorted(nccl.items())))
        return 0
    exec_(argv[0], argv, {**env, **nccl})
    return 0  # only a fake exec returns


def run(args: argparse.Namespace) -> int:
    logsetup.configure(level=args.log_level, fmt=args.log_format)
    return main(args.server, check_only=args.check_only)
