"""Build the local control plane's binaries (and Prometheus, promtool, Helm) from their Go
modules.

Each component is built inside a small wrapper Go module that requires the pinned
upstream module; ``k8s.io/kubernetes`` additionally needs ``replace`` lines pointing its
``k8s.io/*`` staging modules at their published ``v0.x`` versions, read from the
upstream ``go.mod`` so the list never goes stale. Binaries land in a cache directory
outside the repository and a component whose binaries already exist (for the pinned
version) is skipped. A build holds a per-component lock in the cache, so a second
``build`` (or an ``up`` that builds what is missing) waits instead of deleting the first
one's output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gpufleet.devcluster import errors

KUBERNETES_VERSION = "v1.36.3"
KWOK_VERSION = "v0.8.0"
ETCD_VERSION = "v3.6.16"
# Prometheus publishes its Go module as v0.<major*100+minor>.<patch>: v0.316.0 is 3.16.0.
PROMETHEUS_VERSION = "v0.316.0"
HELM_VERSION = "v3.22.0"
# The Kubernetes minor Helm's release build stamps in (its Makefile reads it from the
# k8s.io/client-go it requires: v0.37.0 for v3.22.0). Without it `helm lint` and
# `helm template` assume Kubernetes 1.20 for `.Capabilities` and deprecation checks.
HELM_KUBE_MINOR = "37"

_STAGING_RE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", re.MULTILINE)


@dataclasses.dataclass(frozen=True, slots=True)
class Component:
    """One upstream Go module and the main packages built from it."""

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    ldflags: str = "-s -w"
    tags: tuple[str, ...] = ()

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(pkg.rsplit("/", 1)[-1] for pkg in self.packages)


def _kube_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    return "-s -w " + " ".join(f"-X {pkg}.{k}={v}" for k, v in stamps.items())


def prometheus_release(module_version: str) -> str:
    """The Prometheus release of a module version: ``v0.316.0`` → ``3.16.0``."""
    minor_field, patch = module_version.lstrip("v").split(".")[1:3]
    major, minor = divmod(int(minor_field), 100)
    return f"{major}.{minor}.{patch}"


def _prometheus_ldflags(module_version: str) -> str:
    # No git checkout, so the revision names the module version the source came from.
    pkg = "github.com/prometheus/common/version"
    stamps = {
        "Version": prometheus_release(module_version),
        "Revision": module_version,
        "Branch": "HEAD",
        "BuildUser": "gpufleet",
    }
    return "-s -w " + " ".join(f"-X {pkg}.{k}={v}" for k, v in stamps.items())


def _helm_ldflags(version: str) -> str:
    stamps = {
        "internal/version.version": version,
        "internal/version.gitTreeState": "clean",
        "pkg/lint/rules.k8sVersionMajor": "1",
        "pkg/lint/rules.k8sVersionMinor": HELM_KUBE_MINOR,
        "pkg/chartutil.k8sVersionMajor": "1",
        "pkg/chartutil.k8sVersionMinor": HELM_KUBE_MINOR,
    }
    return "-s -w " + " ".join(f"-X helm.sh/helm/v3/{k}={v}" for k, v in stamps.items())


def components() -> tuple[Component, ...]:
    """The pinned components, in build order (the control plane first)."""
    return (
        Component(
            "etcd",
            "go.etcd.io/etcd/server/v3",
            ETCD_VERSION,
            ("go.etcd.io/etcd/server/v3",),
        ),
        Component("kwok", "sigs.k8s.io/kwok", KWOK_VERSION, ("sigs.k8s.io/kwok/cmd/kwok",)),
        Component(
            "kubernetes",
            "k8s.io/kubernetes",
            KUBERNETES_VERSION,
            tuple(
                f"k8s.io/kubernetes/cmd/{c}"
                for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
            ),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Component(
            "prometheus",
            "github.com/prometheus/prometheus",
            PROMETHEUS_VERSION,
            ("github.com/prometheus/prometheus/cmd/prometheus",),
            ldflags=_prometheus_ldflags(PROMETHEUS_VERSION),
            # Only the Kubernetes service discovery (plugins/plugin_kubernetes.go); the
            # others pull in the AWS, Azure, GCE … SDKs. Without the ``builtinassets``
            # tag the web UI is not embedded (it answers 500); the HTTP API is all we use.
            tags=("remove_all_sd", "enable_kubernetes_sd"),
        ),
        # promtool of the same module (its own component, so a built Prometheus is not
        # rebuilt): deploy/observability's rules are checked and unit-tested with it.
        Component(
            "promtool",
            "github.com/prometheus/prometheus",
            PROMETHEUS_VERSION,
            ("github.com/prometheus/prometheus/cmd/promtool",),
            ldflags=_prometheus_ldflags(PROMETHEUS_VERSION),
            tags=("remove_all_sd", "enable_kubernetes_sd"),
        ),
        # The chart's lint, render and install tests (charts/gpufleet) run this helm.
        Component(
            "helm",
            "helm.sh/helm/v3",
            HELM_VERSION,
            ("helm.sh/helm/v3/cmd/helm",),
            ldflags=_helm_ldflags(HELM_VERSION),
        ),
    )


def binary_names(component: Component) -> tuple[str, ...]:
    """The binaries a component's build produces."""
    # etcd's main package is the module root, whose last path element is "v3".
    return ("etcd",) if component.name == "etcd" else component.binaries


def cache_dir() -> Path:
    """``$GPUFLEET_CACHE`` or ``$XDG_CACHE_HOME/gpufleet`` or ``~/.cache/gpufleet``."""
    if env := os.environ.get("GPUFLEET_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpufleet"


def bin_dir(component: Component, *, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "bin" / f"{component.name}-{component.version}"


def binary_path(name: str, *, root: Path | None = None) -> Path:
    """Where the built binary ``name`` (e.g. ``kube-apiserver``) lives."""
    for comp in components():
        if name in binary_names(comp):
            return bin_dir(comp, root=root) / name
    raise KeyError(name)


def is_built(component: Component, *, root: Path | None = None) -> bool:
    directory = bin_dir(component, root=root)
    return all((directory / b).is_file() for b in binary_names(component))


def wrapper_go_mod(component: Component, *, go_version: str, staging: Sequence[str]) -> str:
    """The go.mod of the wrapper module that builds ``component`` (pure)."""
    lines = [
        f"module gpufleet.local/build/{component.name}",
        "",
        f"go {go_version}",
        "",
        f"require {component.module} {component.version}",
    ]
    if staging:
        staging_version = "v0." + component.version.lstrip("v").split(".", 1)[1]
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {staging_version}" for mod in sorted(staging)]
        lines.append(")")
    return "\n".join(lines) + "\n"


def staging_modules(upstream_go_mod: str) -> list[str]:
    """The ``k8s.io/*`` modules that upstream replaces with ``./staging`` paths."""
    return sorted(set(_STAGING_RE.findall(upstream_go_mod)))


def required_go_version(upstream_go_mod: str) -> str:
    match = re.search(r"^go\s+(\S+)", upstream_go_mod, re.MULTILINE)
    return match.group(1) if match else "1.22"


Progress = Callable[[str], None]


def _go_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=mod"
    env.setdefault("CGO_ENABLED", "0")
    return env


_GO_FALLBACKS = ("/usr/local/go/bin/go",)


def find_go(*, fallbacks: Sequence[str] = _GO_FALLBACKS) -> str:
    """The ``go`` on PATH, else a standard install location; ``ToolMissing`` says what to do."""
    go = shutil.which("go") or next((f for f in fallbacks if Path(f).is_file()), None)
    if go is None:
        raise errors.ToolMissing(
            "the Go toolchain (go >= 1.26) is needed to build the control plane: "
            "install Go 1.26 or newer and put `go` on PATH"
        )
    return go


def _run(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise errors.BuildFailed(
            f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n" + "\n".join(tail)
        )


def _download_go_mod(go: str, component: Component, *, workdir: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{component.module}@{component.version}"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise errors.BuildFailed(
            f"cannot download {component.module}@{component.version}: {detail}"
        )
    return Path(json.loads(proc.stdout)["GoMod"]).read_text()


def build_command(component: Component, *, go: str, target: str) -> list[str]:
    """The ``go build`` argv that writes ``component``'s binaries to ``target`` (pure)."""
    tags = [f"-tags={','.join(component.tags)}"] if component.tags else []
    return [
        go,
        "build",
        "-trimpath",
        *tags,
        f"-ldflags={component.ldflags}",
        "-o",
        target,
        *component.packages,
    ]


def build_component(component: Component, *, root: Path, progress: Progress) -> None:
    go = find_go()
    env = _go_env(root)
    workdir = root / "src" / f"{component.name}-{component.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    log = root / "logs" / f"build-{component.name}-{component.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress(f"[{component.name}] resolving {component.module}@{component.version}")
    upstream = _download_go_mod(go, component, workdir=workdir, env=env)
    staging = staging_modules(upstream) if component.name == "kubernetes" else []
    (workdir / "go.mod").write_text(
        wrapper_go_mod(component, go_version=required_go_version(upstream), staging=staging)
    )
    progress(f"[{component.name}] downloading modules (log: {log})")
    _run([go, "mod", "download"], cwd=workdir, env=env, log=log)
    out = bin_dir(component, root=root)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = ", ".join(binary_names(component))
    progress(f"[{component.name}] compiling {names} (minutes on a cold cache)")
    # A single main package whose directory name is not the binary name (etcd's is
    # "v3") needs an explicit output file; several packages need an output directory.
    target = str(tmp / "etcd") if component.name == "etcd" else str(tmp) + "/"
    _run(build_command(component, go=go, target=target), cwd=workdir, env=env, log=log)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


@contextlib.contextmanager
def _one_build_at_a_time(component: Component, *, root: Path, progress: Progress) -> Iterator[None]:
    """Hold the component's build lock in ``root``, saying so when another holds it.

    Two builds of one component into one cache would delete each other's output.
    """
    lock = root / "locks" / f"{component.name}-{component.version}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"[{component.name}] another process is building it; waiting")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_missing(component: Component, *, root: Path, progress: Progress) -> bool:
    """Build ``component`` unless it is built; True when this call built it.

    A caller that finds another process building it waits and then finds it built.
    """
    with _one_build_at_a_time(component, root=root, progress=progress):
        if is_built(component, root=root):
            where = bin_dir(component, root=root)
            progress(f"[{component.name}] {component.version} already built in {where}")
            return False
        started = time.monotonic()
        build_component(component, root=root, progress=progress)
        progress(f"[{component.name}] built in {time.monotonic() - started:.0f}s")
        return True


def selected(only: Sequence[str] = ()) -> tuple[Component, ...]:
    """The components named in ``only`` (every one when empty), in build order."""
    return tuple(c for c in components() if not only or c.name in only)


def build_all(
    *, root: Path | None = None, progress: Progress = print, only: Sequence[str] = ()
) -> None:
    """Build every missing component, or only those named; skip those already built."""
    for comp in selected(only):
        build_missing(comp, root=root or cache_dir(), progress=progress)
