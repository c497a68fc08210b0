"""``gpufleet sim fleet --fleet FILE``: many simulator processes and the router's list.

The fleet file (YAML, validated by ``FleetFile``)::

    model: llama-3.1-8b
    basePort: 18000            # replicas take consecutive ports from here; 0: any free ports
    speed: 1
    loadSeconds: 0             # simulated model-load seconds; 0 (default) = ready at once
    replicas:
      - {gpu: B200, count: 2}
      - {gpu: H100-80GB, count: 4}
      - {gpu: A100-40GB, count: 8, tensorParallelSize: 1}

Every replica is planned first (an infeasible one stops the launch with the planner's
reason), then started as ``gpufleet sim`` on loopback with the parent-death signal set,
so none outlives the launcher even if it is killed. Replicas skip the model load unless
``loadSeconds`` asks for one (a fleet is a test bench, not a cold-start study), and the
wait for them grows by its wall time. Once all answer ``/health`` the
static backend list is written — ``backends: [{url, model, gpu, tensorParallelSize}]``
— and the launcher waits; SIGINT or SIGTERM stops every child (TERM, then KILL after a
grace period).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import pydantic
import yaml

from gpufleet import ports
from gpufleet.hardware import catalog
from gpufleet.sim import replica

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


class FleetGroup(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    gpu: str = pydantic.Field(description="GPU generation of these replicas")
    count: int = pydantic.Field(1, ge=1, le=64, description="how many replicas")
    tensor_parallel_size: int | None = pydantic.Field(None, alias="tensorParallelSize")
    dtype: str = "bf16"
    args: list[str] = pydantic.Field(default_factory=list, description="extra sim flags")


class FleetFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    model: str = pydantic.Field(description="catalog model every replica serves")
    base_port: int = pydantic.Field(18000, alias="basePort", ge=0, le=65000)
    metrics_base_port: int | None = pydantic.Field(None, alias="metricsBasePort", ge=0)

    @pydantic.field_validator("base_port", "metrics_base_port")
    @classmethod
    def _unprivileged(cls, value: int | None) -> int | None:
        if value is not None and 0 < value < 1024:
            raise ValueError("must be 0 (any free port) or at least 1024")
        return value

    speed: float = pydantic.Field(1.0, gt=0)
    load_seconds: float = pydantic.Field(
        0.0, alias="loadSeconds", ge=0, description="simulated model-load seconds per replica"
    )
    seed: int = 0
    max_model_len: int | None = pydantic.Field(None, alias="maxModelLen", ge=1)
    replicas: list[FleetGroup] = pydantic.Field(min_length=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One planned replica of the fleet."""

    gpu: str
    port: int
    tensor_parallel_size: int
    argv: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", required=True, type=Path, help="fleet YAML file")
    parser.add_argument(
        "--out", type=Path, default=Path("backends.yaml"), help="backend list to write"
    )


def load(path: Path) -> FleetFile:
    return FleetFile.model_validate(yaml.safe_load(path.read_text()))


def _port(base: int, index: int) -> int:
    """Consecutive ports from ``base``; with base 0, a port the kernel says is free."""
    return ports.free_port(HOST) if base == 0 else base + index


def _gpu_name(typed: str) -> str:
    """The catalog name a fleet file's ``gpu`` means (any case, ``H100`` …); an unknown
    one is a ``ReplicaError`` with the closest names."""
    try:
        return catalog.resolve(typed).name
    except catalog.UnknownGpu as exc:
        raise replica.ReplicaError(str(exc)) from None


def plan(fleet: FleetFile) -> list[Member]:
    """Plan every replica; ``ReplicaError`` names the first that cannot run."""
    members: list[Member] = []
    for group in fleet.replicas:
        gpu = _gpu_name(group.gpu)
        spec = replica.ReplicaSpec(
            model=fleet.model,
            gpu=gpu,
            tensor_parallel_size=group.tensor_parallel_size,
            dtype=group.dtype,
            max_model_len=fleet.max_model_len,
        )
        tp = replica.build(spec).tensor_parallel_size
        for _ in range(group.count):
            index = len(members)
            port = _port(fleet.base_port, index)
            argv = [
                "sim", "--gpu", gpu, "--model", fleet.model, "--tp", str(tp),
                "--dtype", group.dtype, "--host", HOST, "--port", str(port),
                "--speed", str(fleet.speed), "--seed", str(fleet.seed + index),
                "--load-seconds", str(fleet.load_seconds),
            ]  # fmt: skip
            if fleet.max_model_len:
                argv += ["--max-model-len", str(fleet.max_model_len)]
            if fleet.metrics_base_port is not None:
                argv += ["--metrics-port", str(_port(fleet.metrics_base_port, index))]
            members.append(Member(gpu, port, tp, (*argv, *group.args)))
    return members


def backends_document(fleet: FleetFile, members: list[Member]) -> dict[str, object]:
    """The static backend list the router reads."""
    return {
        "backends": [
            {
                "url": m.url,
                "model": fleet.model,
                "gpu": m.gpu,
                "tensorParallelSize": m.tensor_parallel_size,
            }
            for m in members
        ]
    }


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(member: Member) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", *member.argv],
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(
    members: list[Member], procs: list[subprocess.Popen[bytes]], *, timeout_s: float
) -> str:
    """Empty when all are healthy; otherwise why not."""
    deadline = time.monotonic() + timeout_s
    waiting = set(range(len(members)))
    while waiting and time.monotonic() < deadline:
        for i in sorted(waiting):
            if procs[i].poll() is not None:
                return f"replica {members[i].url} exited with {procs[i].returncode}"
            if _healthy(members[i].url):
                waiting.discard(i)
        time.sleep(0.1)
    return f"{len(waiting)} replica(s) not healthy after {timeout_s:.0f}s" if waiting else ""


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """TERM every child, KILL those still alive after the grace period."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    try:
        fleet = load(args.fleet)
        members = plan(fleet)
    except (OSError, yaml.YAMLError, pydantic.ValidationError, replica.ReplicaError) as exc:
        print(f"gpufleet sim fleet: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [_spawn(m) for m in members]
        timeout_s = READY_TIMEOUT_S + fleet.load_seconds / fleet.speed
        problem = _wait_ready(members, procs, timeout_s=timeout_s)
        if problem:
            print(f"gpufleet sim fleet: {problem}", file=sys.stderr)
            return 1
        args.out.write_text(yaml.safe_dump(backends_document(fleet, members), sort_keys=False))
        print(f"gpufleet sim fleet: {len(members)} replicas up; backends in {args.out}", flush=True)
        while not stopping:
            time.sleep(0.2)
            dead = [m.url for m, p in zip(members, procs, strict=True) if p.poll() is not None]
            if dead:
                print(f"gpufleet sim fleet: replicas exited: {', '.join(dead)}", file=sys.stderr)
                return 1
        return 0
    finally:
        stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
