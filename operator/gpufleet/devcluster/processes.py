"""Starting, watching and stopping the processes of a local cluster.

Each component runs in its own session (so it outlives the ``gpufleet`` command that
started it and can be stopped as a group), writes to its own log file, and is recorded
by pid together with its executable path; a pid is only ever signalled while
``/proc/<pid>/exe`` still points at that executable, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from gpufleet.devcluster import errors


@dataclasses.dataclass(frozen=True, slots=True)
class Proc:
    """A started component."""

    name: str
    pid: int
    exe: str
    log: str


def start(
    name: str, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
) -> Proc:
    """Spawn ``argv`` in a new session with output appended to ``log``; the environment
    is ``env`` when given, else this process's.

    ``posix_spawn`` rather than ``subprocess.Popen``: the component must outlive this
    process, and no ``Popen`` object is left to complain when it is collected.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ if env is None else env),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, out, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(out)
        os.close(devnull)
    return Proc(name=name, pid=pid, exe=str(Path(argv[0]).resolve()), log=str(log))


def alive(proc: Proc) -> bool:
    """True while ``proc.pid`` runs ``proc.exe`` (and is not a zombie)."""
    try:
        exe = str(Path(f"/proc/{proc.pid}/exe").readlink())
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as handle:  # noqa: PTH123
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return exe.removesuffix(" (deleted)") == proc.exe and state != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(proc: Proc, *, grace: float = 10.0) -> None:
    """SIGTERM the component's process group, SIGKILL after ``grace`` seconds."""
    if not alive(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for _ in range(50):
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.1)


def log_tail(proc: Proc, lines: int = 12) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, *, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(proc: Proc, url: str, *, context: ssl.SSLContext | None, timeout: float) -> None:
    """Poll ``url`` until it answers 200; raise ``StartFailed`` with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(proc):
            raise errors.StartFailed(
                f"{proc.name} exited during start-up; log {proc.log}:\n{log_tail(proc)}"
            )
        if http_ok(url, context=context):
            return
        time.sleep(0.25)
    raise errors.StartFailed(
        f"{proc.name} not healthy at {url} after {timeout:.0f}s; "
        f"last log lines ({proc.log}):\n{log_tail(proc)}"
    )
