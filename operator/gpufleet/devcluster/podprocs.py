"""The processes of one container of a twin pod: start, exit status, probe, stop.

A container's process is started in its own session (``processes.start``) with its
output appended to the pod's log file, so a whole process tree is signalled as one
group. The runner is its parent and collects its exit status; a process adopted after
the runner restarted is only known by pid and executable, and its exit code is then
unknown (reported as 137, "Unknown").
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from gpufleet.devcluster import processes, workloads

UNKNOWN_EXIT = 137


def argv(launch: workloads.Launch) -> list[str]:
    """``gpufleet <args>`` run by this interpreter (the twin runs the installed gpufleet)."""
    return [sys.executable, "-m", "gpufleet.cli", *launch.args]


def start(launch: workloads.Launch, *, env: Mapping[str, str], log: Path) -> processes.Proc:
    header = f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {launch.container}: gpufleet "
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(header + " ".join(launch.args) + "\n")
    return processes.start(launch.container, argv(launch), log=log, env=dict(env))


def exit_code(proc: processes.Proc) -> int | None:
    """The exit code once ``proc`` ended (signal N → 128+N), None while it runs."""
    try:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:
        return None if processes.alive(proc) else UNKNOWN_EXIT
    if pid == 0:
        return None
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else UNKNOWN_EXIT


def signal_group(proc: processes.Proc, sig: signal.Signals) -> None:
    if processes.alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def probe(check: workloads.Probe, host: str) -> bool:
    """One readiness check; the "running" kind is decided by the caller."""
    if check.kind == "running" or check.port is None:
        return True
    timeout = max(0.2, min(check.timeout_seconds, 2.0))
    if check.kind == "tcp":
        try:
            with socket.create_connection((host, check.port), timeout=timeout):
                return True
        except OSError:
            return False
    url = f"http://{host}:{check.port}{check.path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 400)
    except (urllib.error.URLError, OSError, ValueError):
        return False
