"""The Dockerfiles, checked without a container engine: pinned bases, a non-root user,
an entrypoint that is gpufleet's console script and parses, and a vLLM recent enough."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shlex
import tomllib

import pytest

from gpufleet import cli
from gpufleet.api import modelpool

ROOT = pathlib.Path(__file__).parents[2]
GPUFLEET = ROOT / "images" / "gpufleet" / "Dockerfile"
WORKER = ROOT / "worker-image" / "Dockerfile"
PINNED = re.compile(r"^[\w./-]+(:v?\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclasses.dataclass(frozen=True)
class Stage:
    base: str
    user: str | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    copies: list[str]


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def _stages(path: pathlib.Path) -> list[Stage]:
    """Each FROM's stage, ARG defaults substituted in FROM (as docker build does)."""
    args: dict[str, str] = {}
    stages: list[dict[str, object]] = []
    for op, rest in _instructions(path.read_text(encoding="utf-8")):
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            stages.append({"base": image, "user": None, "entrypoint": None, "cmd": None,
                           "copies": []})  # fmt: skip
        elif op == "USER":
            stages[-1]["user"] = rest
        elif op in ("ENTRYPOINT", "CMD"):
            stages[-1][op.lower()] = json.loads(rest)  # exec form only: JSON
        elif op == "COPY" and "--from" not in rest:
            stages[-1]["copies"] += shlex.split(rest)[:-1]  # type: ignore[operator]
    return [Stage(**s) for s in stages]  # type: ignore[arg-type]


def _final(path: pathlib.Path) -> Stage:
    return _stages(path)[-1]


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_every_base_is_pinned_to_an_exact_version_or_digest(path: pathlib.Path) -> None:
    stage_names = {"build"}
    for stage in _stages(path):
        assert stage.base in stage_names or PINNED.match(stage.base), stage.base
        assert ":" in stage.base or "@" in stage.base, f"{stage.base}: no tag or digest"


@pytest.mark.parametrize(
    ("path", "uid"), [(GPUFLEET, "65532:65532"), (WORKER, "1000:1000")], ids=["gpufleet", "worker"]
)
def test_the_final_stage_runs_as_the_uid_the_pod_specs_use(path: pathlib.Path, uid: str) -> None:
    assert _final(path).user == uid


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_entrypoint_is_gpufleets_console_script(path: pathlib.Path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = _final(path).entrypoint
    assert entrypoint is not None
    assert scripts[entrypoint[0]] == "gpufleet.cli:main"


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_copied_sources_exist(path: pathlib.Path) -> None:
    copies = [c for s in _stages(path) for c in s.copies]
    assert copies
    assert all((ROOT / c).exists() for c in copies), copies


def test_gpufleet_image_runs_the_operator_by_default() -> None:
    final = _final(GPUFLEET)
    argv = [*(final.entrypoint or [])[1:], *(final.cmd or [])]
    parser, _ = cli.parser_for(argv)
    assert parser.parse_args(argv).command == "operator"


def test_worker_image_passes_pod_args_to_gpufleet_worker_as_vllm_flags() -> None:
    argv = [*(_final(WORKER).entrypoint or [])[1:], "--model", "m", "-tp", "2"]
    parser, _ = cli.parser_for(argv)
    args = parser.parse_args(argv)
    assert args.command == "worker"
    from gpufleet.worker import command

    assert command.server_argv(args.server) == ["vllm", "serve", "--model", "m", "-tp", "2"]


def test_worker_base_exports_kv_cache_usage_perc() -> None:
    base = _final(WORKER).base
    match = re.fullmatch(r"vllm/vllm-openai:v(\d+)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}", base)
    assert match, base
    # vLLM exports vllm:kv_cache_usage_perc from v0.10 (it replaced gpu_cache_usage_perc).
    assert tuple(int(g) for g in match.groups()[:2]) >= (0, 10)


def test_worker_base_is_the_modelpool_default_vllm_release() -> None:
    assert _final(WORKER).base.split("@", 1)[0] == modelpool.DEFAULT_VLLM_IMAGE


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_every_upstream_base_is_pinned_by_digest(path: pathlib.Path) -> None:
    assert all("@sha256:" in s.base for s in _stages(path) if s.base != "build")


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_no_syntax_directive_sends_the_builder_to_a_registry(path: pathlib.Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first), first


@pytest.mark.parametrize("path", [GPUFLEET, WORKER], ids=["gpufleet", "worker"])
def test_dependencies_install_from_the_lock_before_the_source_is_copied(
    path: pathlib.Path,
) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.index("RUN /src/venv.sh deps") < text.index("COPY operator")
    assert text.index("COPY operator") < text.index("RUN /src/venv.sh package")
    recipe = (ROOT / "images" / "venv.sh").read_text(encoding="utf-8")
    assert "--require-hashes --only-binary :all: -r /src/requirements/runtime.txt" in recipe
    assert "--no-deps" in recipe.split("package)", 1)[1]  # the source chooses no versions


@pytest.mark.parametrize(
    ("path", "uid"), [(GPUFLEET, "65532"), (WORKER, "1000")], ids=["gpufleet", "worker"]
)
def test_the_final_uid_has_a_name(path: pathlib.Path, uid: str) -> None:
    """Kopf, getpass and PyTorch look the user up: a passwd entry and USER answer it."""
    final = path.read_text(encoding="utf-8").rsplit("\nFROM ", 1)[1]
    assert f"gpufleet:x:{uid}:{uid}:" in final
    assert re.search(r"^ENV .*\bUSER=gpufleet\b", final, re.MULTILINE | re.DOTALL)


def test_the_build_context_holds_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copies = {c.rstrip("/") for p in (GPUFLEET, WORKER) for s in _stages(p) for c in s.copies}
    assert copies <= kept
