"""The locks in requirements/ agree with pyproject.toml: every dependency it names is
pinned to a version inside its range, with hashes, in the lock each install uses; the
development lock ships the runtime lock's versions; nothing is pinned as a direct
dependency that pyproject.toml no longer names. `make lock` mends a failure here."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).parents[2]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(.+)$")


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: int
    via: tuple[str, ...]


def _pins(path: pathlib.Path) -> list[Pin]:
    """Each ``name==version`` entry of a uv/pip-tools lock with its hashes and ``via``."""
    pins: list[Pin] = []
    name = version = None
    hashes, via = 0, []
    for line in [*path.read_text(encoding="utf-8").splitlines(), "end==0"]:
        if (found := _PIN.match(line)) is not None:
            if name is not None and version is not None:
                pins.append(Pin(name, version, hashes, tuple(via)))
            name, version = canonicalize_name(found.group(1)), found.group(2)
            hashes, via = 0, []
        hashes += line.count("--hash=sha256:")
        if (origin := _VIA.match(line)) is not None:
            via.append(origin.group(1).strip())
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


def _build_requirements() -> list[Requirement]:
    lines = (LOCKS / "build.in").read_text(encoding="utf-8").splitlines()
    return [Requirement(ln) for ln in lines if ln.strip() and not ln.startswith("#")]


CASES = {
    "runtime": ("runtime.txt", _requirements()),
    "dev": ("dev.txt", _requirements("dev", "chart") + _build_requirements()),
    "build": ("build.txt", _build_requirements()),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_dependency_is_pinned_inside_its_range(case: str) -> None:
    lock, wanted = CASES[case]
    pinned: dict[str, list[str]] = {}
    for pin in _pins(LOCKS / lock):
        pinned.setdefault(pin.name, []).append(pin.version)
    for requirement in wanted:
        versions = pinned.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements/{lock}: run `make lock`"
        outside = [v for v in versions if v not in requirement.specifier]
        assert not outside, f"requirements/{lock} pins {requirement.name} {outside}, " \
            f"outside {requirement.specifier}: run `make lock`"  # fmt: skip


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt", "build.txt"])
def test_every_pin_has_hashes(lock: str) -> None:
    pins = _pins(LOCKS / lock)
    assert pins
    assert [p.name for p in pins if p.hashes == 0] == []


def test_the_tests_run_the_versions_the_images_ship() -> None:
    development = {(p.name, p.version) for p in _pins(LOCKS / "dev.txt")}
    for lock in ("runtime.txt", "build.txt"):
        shipped = {(p.name, p.version) for p in _pins(LOCKS / lock)}
        assert shipped - development == set(), lock


def test_no_direct_dependency_is_pinned_that_pyproject_no_longer_names() -> None:
    named = {canonicalize_name(r.name) for r in _requirements()}
    direct = {p.name for p in _pins(LOCKS / "runtime.txt") if "gpufleet (pyproject.toml)" in p.via}
    assert direct == named


def test_the_lock_parser_reads_markers_and_continuations() -> None:
    sample = ROOT / "requirements" / "runtime.txt"
    pins = {p.name: p for p in _pins(sample)}
    assert pins["aiohttp"].hashes > 1 and "gpufleet (pyproject.toml)" in pins["aiohttp"].via
