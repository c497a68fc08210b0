"""Bringing a named local cluster up and down.

``up`` generates certificates and kubeconfigs, starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK on free loopback ports, waits for each
to be healthy, registers the fleet's KWOK nodes and waits for them to be Ready. What it
started is recorded in ``state.json`` as it goes, so a failed ``up`` (or a later
``down``) stops exactly those processes. Clusters live under
``<cache>/clusters/<name>/`` and run side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from gpufleet.devcluster import (
    build,
    certs,
    components,
    fleet,
    kubeconfig,
    nodes,
    processes,
)
from gpufleet.ports import free_port

DEFAULT_NAME = "gpufleet"
Progress = Callable[[str], None]
_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    """A running cluster as recorded in its state file."""

    name: str
    layout: components.Layout
    ports: components.Ports
    procs: tuple[processes.Proc, ...]

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def proc(self, name: str) -> processes.Proc:
        return next(p for p in self.procs if p.name == name)


def clusters_root() -> Path:
    return build.cache_dir() / "clusters"


def layout_for(name: str) -> components.Layout:
    return components.Layout(clusters_root() / name)


def _allocate_ports() -> components.Ports:
    return components.Ports(*(free_port() for _ in range(6)))


def _save(cluster: Cluster) -> None:
    doc = {
        "name": cluster.name,
        "ports": dataclasses.asdict(cluster.ports),
        "procs": [dataclasses.asdict(p) for p in cluster.procs],
    }
    cluster.layout.state.write_text(json.dumps(doc, indent=2))


def load(name: str) -> Cluster | None:
    """The recorded cluster ``name``, or None when none was recorded."""
    layout = layout_for(name)
    try:
        doc = json.loads(layout.state.read_text())
    except (OSError, ValueError):
        return None
    return Cluster(
        name=name,
        layout=layout,
        ports=components.Ports(**doc["ports"]),
        procs=tuple(processes.Proc(**p) for p in doc["procs"]),
    )


def is_running(cluster: Cluster) -> bool:
    return len(cluster.procs) == len(_ORDER) and all(processes.alive(p) for p in cluster.procs)


def _tls(layout: components.Layout) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(layout.pki.ca_cert))


def _insecure() -> ssl.SSLContext:
    # Controller-manager and scheduler serve /healthz with a self-signed certificate
    # they generate at start; only liveness is read from it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _write_configs(name: str, layout: components.Layout, ports: components.Ports) -> None:
    pki = certs.generate(layout.pki.directory)
    server = f"https://127.0.0.1:{ports.apiserver}"
    for client in certs.CLIENTS:
        text = kubeconfig.render(
            cluster=f"gpufleet-{name}",
            server=server,
            ca=pki.ca_cert,
            cert=pki.client_cert(client.file_stem),
            key=pki.client_key(client.file_stem),
            user=client.user,
        )
        target = (
            layout.admin_kubeconfig
            if client.file_stem == "admin"
            else layout.kubeconfig(client.file_stem)
        )
        kubeconfig.write(target, text)
    stages = Path(__file__).with_name("data") / "kwok-stages.yaml"
    layout.kwok_config.write_text(stages.read_text())


def _binary(name: str) -> Path:
    return build.binary_path(name)


def _plan(
    name: str, layout: components.Layout, ports: components.Ports
) -> list[tuple[str, list[str], str, ssl.SSLContext | None]]:
    """(component, argv, health URL, TLS context) in start order."""
    local = "https://127.0.0.1"
    return [
        (
            "etcd",
            components.etcd(_binary("etcd"), layout, ports, name),
            f"http://127.0.0.1:{ports.etcd_client}/health",
            None,
        ),
        (
            "kube-apiserver",
            components.apiserver(_binary("kube-apiserver"), layout, ports),
            f"{local}:{ports.apiserver}/readyz",
            _tls(layout),
        ),
        (
            "kube-controller-manager",
            components.controller_manager(_binary("kube-controller-manager"), layout, ports),
            f"{local}:{ports.controller_manager}/healthz",
            _insecure(),
        ),
        (
            "kube-scheduler",
            components.scheduler(_binary("kube-scheduler"), layout, ports),
            f"{local}:{ports.scheduler}/healthz",
            _insecure(),
        ),
        (
            "kwok",
            components.kwok(_binary("kwok"), layout, ports, name),
            f"http://127.0.0.1:{ports.kwok}/healthz",
            None,
        ),
    ]


def _start_all(
    name: str, layout: components.Layout, ports: components.Ports, progress: Progress
) -> Cluster:
    cluster = Cluster(name=name, layout=layout, ports=ports, procs=())
    for component, argv, url, context in _plan(name, layout, ports):
        started = time.monotonic()
        proc = processes.start(component, argv, log=layout.logs / f"{component}.log")
        cluster = dataclasses.replace(cluster, procs=(*cluster.procs, proc))
        _save(cluster)
        processes.wait_healthy(proc, url, context=context, timeout=120)
        progress(
            f"  {component:<24} healthy in {time.monotonic() - started:4.1f}s  (log {proc.log})"
        )
    return cluster


def up(
    name: str = DEFAULT_NAME, *, fleet_file: str | None = None, progress: Progress = print
) -> Cluster:
    """Start cluster ``name`` with the fleet in ``fleet_file`` (default fleet when None).

    Returns the running cluster. If it is already running it is returned as is. On any
    failure everything this call started is stopped before ``DevClusterError`` is raised.
    """
    the_fleet = fleet.load(fleet_file)  # validate before starting anything
    existing = load(name)
    if existing is not None and is_running(existing):
        progress(f"cluster {name!r} is already running (fleet not re-applied)")
        return existing
    if existing is not None:
        _stop(existing)
    for comp in build.components():
        if not build.is_built(comp):
            progress(f"{comp.name} {comp.version} is not built yet; building it now")
            build.build_all(progress=progress)
            break
    layout = layout_for(name)
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.root.mkdir(parents=True)
    ports = _allocate_ports()
    _write_configs(name, layout, ports)
    progress(f"starting cluster {name!r} (apiserver https://127.0.0.1:{ports.apiserver})")
    cluster: Cluster | None = None
    try:
        cluster = _start_all(name, layout, ports, progress)
        count = nodes.register(cluster.kubeconfig, fleet.render_nodes(the_fleet), progress=progress)
        progress(f"  {count} KWOK nodes Ready")
    except BaseException:
        recorded = load(name)
        if recorded is not None:
            _stop(recorded)
        raise
    return cluster


def _stop(cluster: Cluster) -> None:
    for proc in reversed(cluster.procs):
        processes.stop(proc)
    with contextlib.suppress(OSError):
        cluster.layout.state.unlink()


def down(name: str = DEFAULT_NAME, *, progress: Progress = print) -> bool:
    """Stop cluster ``name`` and delete its files; False when it was not running."""
    cluster = load(name)
    if cluster is None:
        shutil.rmtree(layout_for(name).root, ignore_errors=True)
        return False
    running = [p for p in cluster.procs if processes.alive(p)]
    _stop(cluster)
    for proc in running:
        progress(f"  stopped {proc.name} (pid {proc.pid})")
    shutil.rmtree(cluster.layout.root, ignore_errors=True)
    return bool(running)


def names() -> list[str]:
    root = clusters_root()
    return (
        sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
        if root.is_dir()
        else []
    )


def restart_component(cluster: Cluster, component: str, *, progress: Progress = print) -> Cluster:
    """Stop and start one component with the same flags (e.g. to restart kube-apiserver)."""
    plan = {
        c: (argv, url, ctx)
        for c, argv, url, ctx in _plan(cluster.name, cluster.layout, cluster.ports)
    }
    argv, url, context = plan[component]
    processes.stop(cluster.proc(component))
    proc = processes.start(component, argv, log=cluster.layout.logs / f"{component}.log")
    updated = dataclasses.replace(
        cluster, procs=tuple(proc if p.name == component else p for p in cluster.procs)
    )
    _save(updated)
    processes.wait_healthy(proc, url, context=context, timeout=120)
    progress(f"  restarted {component} (pid {proc.pid})")
    return updated
