"""Bringing a named local cluster up and down.

``up`` generates certificates and kubeconfigs, starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK on free loopback ports, waits for each
to be healthy, registers the fleet's KWOK nodes and waits for them to be Ready, then
starts the optional *add-ons* asked for (Prometheus), each prepared and launched the
same way. What it started is recorded in ``state.json`` as it goes, so a failed ``up``
(or a later ``down``) stops exactly those processes. Clusters live under
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

import yaml

from gpufleet.devcluster import (
    build,
    certs,
    components,
    fleet,
    kubeconfig,
    nodes,
    podrunner,
    processes,
    prometheus,
    twin,
)
from gpufleet.ports import free_port

DEFAULT_NAME = "gpufleet"
Progress = Callable[[str], None]
_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """How to start one component, and the URL that answers 200 once it is healthy."""

    component: str
    argv: tuple[str, ...]
    health_url: str
    context: ssl.SSLContext | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    """A running cluster as recorded in its state file.

    ``addons`` names the optional components this cluster was started with; ``procs``
    has one entry per core component and per add-on once all are up.
    """

    name: str
    layout: components.Layout
    ports: components.Ports
    procs: tuple[processes.Proc, ...]
    addons: tuple[str, ...] = ()
    sim_speed: float = 1.0
    load_seconds: float | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def prometheus_url(self) -> str | None:
        """The Prometheus HTTP API, or None when the cluster runs without one."""
        port = self.ports.prometheus
        return prometheus.url(port) if "prometheus" in self.addons and port is not None else None

    def proc(self, name: str) -> processes.Proc:
        return next(p for p in self.procs if p.name == name)


@dataclasses.dataclass(frozen=True, slots=True)
class Addon:
    """An optional component, started once the KWOK nodes are Ready.

    ``prepare`` does what must precede the process (files, RBAC) and may run again;
    ``launch`` says how to start it. Add-ons start in the order of ``ADDONS``.
    """

    name: str
    prepare: Callable[[Cluster], None]
    launch: Callable[[Cluster], Launch]


def _prepare_prometheus(cluster: Cluster) -> None:
    prometheus.prepare(cluster.layout, admin_kubeconfig=cluster.kubeconfig)


def _launch_prometheus(cluster: Cluster) -> Launch:
    port = cluster.ports.prometheus
    if port is None:
        raise ValueError(f"cluster {cluster.name!r} has no Prometheus port")
    argv = components.prometheus(_binary("prometheus"), cluster.layout, port)
    return Launch("prometheus", tuple(argv), prometheus.ready_url(port))


def _prepare_nothing(cluster: Cluster) -> None:
    return None


def _launch_pod_runner(cluster: Cluster) -> Launch:
    port = cluster.ports.pod_runner
    if port is None:
        raise ValueError(f"cluster {cluster.name!r} has no pod-runner port")
    argv = twin.argv(
        cluster.name, port=port, speed=cluster.sim_speed, load_seconds=cluster.load_seconds
    )
    return Launch("pod-runner", tuple(argv), twin.health_url(port))


ADDONS: tuple[Addon, ...] = (
    Addon("pod-runner", _prepare_nothing, _launch_pod_runner),
    Addon("prometheus", _prepare_prometheus, _launch_prometheus),
)


def _addons_of(cluster: Cluster) -> list[Addon]:
    return [a for a in ADDONS if a.name in cluster.addons]


def clusters_root() -> Path:
    return build.cache_dir() / "clusters"


def layout_for(name: str) -> components.Layout:
    return components.Layout(clusters_root() / name)


def _allocate_ports(addons: tuple[str, ...]) -> components.Ports:
    core = components.Ports(*(free_port() for _ in range(6)))
    return dataclasses.replace(
        core,
        prometheus=free_port() if "prometheus" in addons else None,
        pod_runner=free_port() if "pod-runner" in addons else None,
    )


def _save(cluster: Cluster) -> None:
    doc = {
        "name": cluster.name,
        "ports": dataclasses.asdict(cluster.ports),
        "procs": [dataclasses.asdict(p) for p in cluster.procs],
        "addons": list(cluster.addons),
        "simSpeed": cluster.sim_speed,
        "loadSeconds": cluster.load_seconds,
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
        addons=tuple(doc.get("addons", ())),
        sim_speed=float(doc.get("simSpeed", 1.0)),
        load_seconds=doc.get("loadSeconds"),
    )


def is_running(cluster: Cluster) -> bool:
    """True when every core component and every add-on it was started with is alive."""
    wanted = sorted((*_ORDER, *cluster.addons))
    started = sorted(p.name for p in cluster.procs)
    return started == wanted and all(processes.alive(p) for p in cluster.procs)


def _tls(layout: components.Layout) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(layout.pki.ca_cert))


def _insecure() -> ssl.SSLContext:
    # Controller-manager and scheduler serve /healthz with a self-signed certificate
    # they generate at start; only liveness is read from it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def kwok_stages(text: str, *, workloads: bool) -> str:
    """The KWOK stages to run: all of them, or with ``workloads`` only the Node stages
    (the pod runner then plays the kubelet for pods, so KWOK must leave them alone)."""
    if not workloads:
        return text
    docs = [d for d in yaml.safe_load_all(text) if d]
    kept = [d for d in docs if d["spec"]["resourceRef"]["kind"] == "Node"]
    return yaml.safe_dump_all(kept, sort_keys=False)


def _write_configs(
    name: str, layout: components.Layout, ports: components.Ports, *, workloads: bool
) -> None:
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
    layout.kwok_config.write_text(kwok_stages(stages.read_text(), workloads=workloads))


def _binary(name: str) -> Path:
    return build.binary_path(name)


def _plan(name: str, layout: components.Layout, ports: components.Ports) -> list[Launch]:
    """The core components in start order."""
    local = "https://127.0.0.1"
    return [
        Launch(
            "etcd",
            tuple(components.etcd(_binary("etcd"), layout, ports, name)),
            f"http://127.0.0.1:{ports.etcd_client}/health",
        ),
        Launch(
            "kube-apiserver",
            tuple(components.apiserver(_binary("kube-apiserver"), layout, ports)),
            f"{local}:{ports.apiserver}/readyz",
            _tls(layout),
        ),
        Launch(
            "kube-controller-manager",
            tuple(components.controller_manager(_binary("kube-controller-manager"), layout, ports)),
            f"{local}:{ports.controller_manager}/healthz",
            _insecure(),
        ),
        Launch(
            "kube-scheduler",
            tuple(components.scheduler(_binary("kube-scheduler"), layout, ports)),
            f"{local}:{ports.scheduler}/healthz",
            _insecure(),
        ),
        Launch(
            "kwok",
            tuple(components.kwok(_binary("kwok"), layout, ports, name)),
            f"http://127.0.0.1:{ports.kwok}/healthz",
        ),
    ]


def _start(cluster: Cluster, launch: Launch, progress: Progress) -> Cluster:
    """Start one component, record it, wait until it is healthy; the updated cluster."""
    started = time.monotonic()
    name = launch.component
    proc = processes.start(name, launch.argv, log=cluster.layout.logs / f"{name}.log")
    cluster = dataclasses.replace(cluster, procs=(*cluster.procs, proc))
    _save(cluster)
    processes.wait_healthy(proc, launch.health_url, context=launch.context, timeout=120)
    progress(f"  {name:<24} healthy in {time.monotonic() - started:4.1f}s  (log {proc.log})")
    return cluster


def _start_core(cluster: Cluster, progress: Progress) -> Cluster:
    for launch in _plan(cluster.name, cluster.layout, cluster.ports):
        cluster = _start(cluster, launch, progress)
    return cluster


def _start_addons(cluster: Cluster, progress: Progress) -> Cluster:
    for addon in _addons_of(cluster):
        addon.prepare(cluster)
        cluster = _start(cluster, addon.launch(cluster), progress)
    return cluster


def up(
    name: str = DEFAULT_NAME,
    *,
    fleet_file: str | None = None,
    prometheus: bool = True,
    workloads: bool = True,
    sim_speed: float = 1.0,
    load_seconds: float | None = None,
    progress: Progress = print,
) -> Cluster:
    """Start cluster ``name`` with the fleet in ``fleet_file`` (default fleet when None),
    unless ``workloads`` is False the pod runner (``twin``: a process per pod on the KWOK
    nodes; simulators at ``sim_speed``, model loads of ``load_seconds`` or computed), and
    unless ``prometheus`` is False a Prometheus that discovers its pods.

    Returns the running cluster. If it is already running it is returned as is (with
    whatever add-ons it has). On any failure everything this call started is stopped
    before ``DevClusterError`` is raised.
    """
    wanted = {"prometheus": prometheus, "pod-runner": workloads}
    addons = tuple(a.name for a in ADDONS if wanted[a.name])
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
    ports = _allocate_ports(addons)
    _write_configs(name, layout, ports, workloads="pod-runner" in addons)
    progress(f"starting cluster {name!r} (apiserver https://127.0.0.1:{ports.apiserver})")
    cluster = Cluster(
        name=name, layout=layout, ports=ports, procs=(), addons=addons,
        sim_speed=sim_speed, load_seconds=load_seconds,
    )  # fmt: skip
    try:
        cluster = _start_core(cluster, progress)
        count = nodes.register(cluster.kubeconfig, fleet.render_nodes(the_fleet), progress=progress)
        progress(f"  {count} KWOK nodes Ready")
        cluster = _start_addons(cluster, progress)
    except BaseException:
        recorded = load(name)
        if recorded is not None:
            _stop(recorded)
        raise
    return cluster


def _stop(cluster: Cluster) -> None:
    """Stop every component (the pod runner stops its pods' processes), then any pod
    process a runner recorded that is still alive (a runner killed with SIGKILL)."""
    for proc in reversed(cluster.procs):
        processes.stop(proc)
    for proc in podrunner.recorded_procs(twin.pods_root(cluster.layout)):
        processes.stop(proc, grace=2.0)
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
    launches = [
        *_plan(cluster.name, cluster.layout, cluster.ports),
        *(addon.launch(cluster) for addon in _addons_of(cluster)),
    ]
    launch = next(each for each in launches if each.component == component)
    processes.stop(cluster.proc(component))
    proc = processes.start(component, launch.argv, log=cluster.layout.logs / f"{component}.log")
    updated = dataclasses.replace(
        cluster, procs=tuple(proc if p.name == component else p for p in cluster.procs)
    )
    _save(updated)
    processes.wait_healthy(proc, launch.health_url, context=launch.context, timeout=120)
    progress(f"  restarted {component} (pid {proc.pid})")
    return updated
