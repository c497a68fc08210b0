"""gpufleet's images for the tests: ``built`` builds them once per test run with
``gpufleet dev-cluster images`` (buildah's layer cache makes a rebuild of unchanged
sources take seconds), ``container`` runs one with podman as the pod specs run it.
Where no builder can run (buildah, podman, runc or debootstrap missing), ``built``
skips, naming what to install."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from gpufleet.devcluster import images, imagespec

ROOT = Path(__file__).parents[2]


def built() -> list[imagespec.Image]:
    """Build the images (seconds when nothing changed); skip where no builder can run."""
    missing = images.missing_tools()
    if missing:
        pytest.skip(f"no image builder here: {', '.join(missing)} not installed "
                    f"(apt-get install {' '.join(images.TOOLS)})")  # fmt: skip
    return images.build_images(ROOT, progress=lambda _msg: None)


class Container:
    """One ``podman run`` in the background; ``stop`` removes it."""

    def __init__(self, argv: Sequence[str], name: str, log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        subprocess.run(["podman", "stop", "-t", "5", self.name], capture_output=True,
                       check=False, timeout=60)  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def container(
    reference: str,
    args: Sequence[str],
    *,
    log: Path,
    mounts: Sequence[tuple[Path, str]] = (),
    user: str = "65532:65532",
) -> Iterator[Container]:
    """``reference`` run with ``args`` as ``user``, a read-only root and the host's
    network, until the block ends."""
    name = f"gpufleet-test-{uuid.uuid4().hex[:8]}"
    argv = imagespec.run_argv(reference, args, name=name, user=user, mounts=mounts)
    started = Container(argv, name, log)
    try:
        yield started
    finally:
        started.stop()


def wait_for(what: str, check: Container, ready: Callable[[], object], *, timeout: float) -> None:
    """Poll ``ready()`` until true; fail with the container's log when it exits or the
    time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check.proc.poll() is not None:
            pytest.fail(f"{what}: the container exited with {check.proc.returncode}:\n"
                        f"{check.text()[-3000:]}")  # fmt: skip
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f}s; container log:\n{check.text()[-3000:]}")
