"""``gpufleet router`` as a real process: its config written to a file, its log (at
DEBUG, stderr) kept in a file for the test to read, stopped with a signal."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gpufleet.ports import free_port
from tests.router.peers import get_status


@dataclasses.dataclass
class RouterProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> float:
        """Send SIGTERM; the monotonic time it was sent."""
        self.proc.send_signal(signal.SIGTERM)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_router(raw: dict[str, Any], directory: Path) -> RouterProcess:
    """Start ``gpufleet router`` on ``raw`` and wait until it is ready (/readyz 200)."""
    config_path = directory / "router.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    log_path = directory / "router.log"
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "router", "--config", str(config_path),
             "--port", str(port), "--log-level", "DEBUG"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    router = RouterProcess(proc, port, log_path)
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"router exited with {proc.returncode}: {router.log()}")
        with contextlib.suppress(OSError):
            if get_status(router.url + "/readyz") == 200:
                return router
        time.sleep(0.1)
    router.stop()
    raise AssertionError("router never became ready")
