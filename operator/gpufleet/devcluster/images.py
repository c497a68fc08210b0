"""``gpufleet dev-cluster images``: build gpufleet's images here, with no registry and no
daemon (what is built, on which bases: ``gpufleet.devcluster.imagespec``).

The Debian base is made once with debootstrap, kept as a tarball in the cache
(``<cache>/images/``) and imported into the container storage; the stand-in for vLLM's
image is built on it; then both images, with buildah's layer cache, so a rebuild after
an edit of the source redoes only the layers from the source on. Each step says what it
does and how long it took; its output goes to ``<cache>/logs/images-*.log`` and a
failure ends with the log's tail. Where no builder can run, ``ToolMissing`` names the
packages to install.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gpufleet.devcluster import build, errors, imagespec

Progress = Callable[[str], None]
TOOLS = ("buildah", "podman", "runc", "debootstrap")
# The host's CA bundle, mounted for pip's steps only (where a proxy's CA lives).
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
_TRIMMED = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man",
            "usr/share/locale", "usr/share/info")  # fmt: skip


def missing_tools() -> list[str]:
    """The programs a build needs that are not on PATH."""
    return [t for t in TOOLS if shutil.which(t) is None]


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise errors.ToolMissing(
            f"building images needs {', '.join(missing)}: on Debian or Ubuntu, "
            f"`apt-get install {' '.join(TOOLS)}` (docs/install.md)"
        )


def storage_driver() -> str | None:
    """None (the storage's own default, overlay where the kernel allows) when buildah
    can use it; "vfs" otherwise."""
    done = subprocess.run(["buildah", "info"], capture_output=True, check=False, timeout=60)
    return None if done.returncode == 0 else "vfs"


def exists(reference: str, *, driver: str | None) -> bool:
    storage = ["--storage-driver", driver] if driver else []
    argv = ["podman", *storage, "image", "exists", reference]
    return subprocess.run(argv, capture_output=True, check=False, timeout=60).returncode == 0


def _log(name: str) -> Path:
    path = build.cache_dir() / "logs" / f"images-{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run(argv: Sequence[str], *, log: Path, stdin: Path | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        source = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
        try:
            done = subprocess.run(argv, stdin=source, stdout=out, stderr=subprocess.STDOUT,
                                  check=False)  # fmt: skip
        finally:
            if stdin is not None:
                source.close()  # type: ignore[union-attr]
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise errors.BuildFailed(
            f"{argv[0]} {argv[1]} failed (exit {done.returncode}); log {log}:\n" + "\n".join(tail)
        )


def _timed(progress: Progress, what: str, step: Callable[[], None]) -> None:
    progress(f"[images] {what}")
    started = time.monotonic()
    step()
    progress(f"[images] {what}: done in {time.monotonic() - started:.0f}s")


def base_tarball() -> Path:
    return build.cache_dir() / "images" / f"debian-{imagespec.SUITE}-python3.tar"


def _make_tarball(target: Path) -> None:
    """debootstrap into a scratch folder, trim what no image needs, pack it as root."""
    scratch = target.with_suffix(".rootfs")
    shutil.rmtree(scratch, ignore_errors=True)
    log = _log("base")
    try:
        _run(imagespec.debootstrap_argv(scratch), log=log)
        for relative in _TRIMMED:
            for child in (scratch / relative).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        partial = target.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(scratch, arcname=".")
        partial.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure_base(*, driver: str | None, progress: Progress) -> None:
    """``imagespec.BASE`` in the container storage (debootstrap once, about a minute)."""
    if exists(imagespec.BASE, driver=driver):
        return
    tarball = base_tarball()
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        _timed(progress, f"debootstrap Debian {imagespec.SUITE} with Python 3",
               lambda: _make_tarball(tarball))  # fmt: skip
    storage = ["--storage-driver", driver] if driver else []
    argv = ["podman", *storage, "import", "--change", "ENV LANG=C.UTF-8", "-",
            imagespec.BASE]  # fmt: skip
    step = functools.partial(_run, argv, log=_log("base"), stdin=tarball)
    _timed(progress, f"import {imagespec.BASE}", step)


def build_images(
    root: Path,
    *,
    only: Sequence[str] = (),
    progress: Progress = print,
) -> list[imagespec.Image]:
    """Build the images named in ``only`` (all when empty) from the repository at
    ``root``; returns what was built."""
    require_tools()
    driver = storage_driver()
    chosen = [i for i in imagespec.IMAGES if not only or i.name in only]
    ensure_base(driver=driver, progress=progress)
    ca = HOST_CA if HOST_CA.is_file() else None
    for image in chosen:
        if image.base == imagespec.STANDIN:
            argv = imagespec.standin_argv(root=root, storage_driver=driver)
            step = functools.partial(_run, argv, log=_log("standin"))
            _timed(progress, f"build {imagespec.STANDIN}", step)
        argv = imagespec.bud_argv(image, root=root, ca_bundle=ca, storage_driver=driver)
        step = functools.partial(_run, argv, log=_log(image.name))
        _timed(progress, f"build {image.reference} ({image.dockerfile})", step)
    return chosen


def size_mb(reference: str) -> float:
    """The image's size in the storage, MB."""
    argv = ["podman", "image", "inspect", "--format", "{{.Size}}", reference]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout.strip()) / 1e6
