"""The twin's kubelet: one local process per container of each pod on a KWOK node.

KWOK runs the cluster's nodes; with workloads on, it leaves pods alone and this runner
plays the kubelet for every pod bound to a KWOK node:

- it gives the pod an IP from the cluster's loopback range (``podstatus.IpAllocator``:
  round-robin, never an address a live process may still hold) and reports it Running;
- it starts what ``workloads.launches`` says (``gpufleet sim`` for vLLM containers,
  the ``gpufleet`` command for gpufleet's image) with the pod's volumes and a
  ServiceAccount kubeconfig in the pod's private folder (``podfiles``), output to
  ``<cluster>/logs/pods/<namespace>_<pod>.log``;
- a container is Ready once its readiness (else startup) probe answers, not before, and
  not Ready after ``failureThreshold`` failed probes; a process that exits makes the
  pod not Ready, counts a restart and is started again after the kubelet's back-off;
- a deleted pod's processes get SIGTERM, SIGKILL after its grace period, and only then
  is the pod removed (grace 0), which frees its IP;
- containers it does not run are Ready at once, as KWOK would make them; their image is
  logged once.

Pods are watched (list, then watch from the list's resourceVersion; a watch that
expires is re-listed); one thread receives events, the main loop owns every process
and all state, so nothing is shared but the event queue. The runner records each pod's
processes in the pod's folder, so a restarted runner adopts them, and on SIGTERM it
stops every process it runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import http.server
import json
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from gpufleet.devcluster import podfiles, podprocs, podstatus, processes, workloads
from gpufleet.hardware import catalog

log = logging.getLogger("gpufleet.devcluster.podrunner")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
TICK_SECONDS = 0.2
REFRESH_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 5.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How the runner is set up for one cluster."""

    pods_root: Path
    logs_root: Path
    pod_cidr: str
    server: str
    ca: Path
    speed: float = 1.0
    load_seconds: float | None = None


@dataclasses.dataclass(slots=True)
class Container:
    """One container of a pod and its process, as the main loop tracks it."""

    name: str
    image: str
    launch: workloads.Launch | None
    error: str = ""
    proc: processes.Proc | None = None
    running_since: str | None = None
    ready: bool = False
    failures: int = 0
    next_probe: float = 0.0
    next_start: float = 0.0
    restarts: int = 0
    last_terminated: podstatus.Terminated | None = None
    terminated: podstatus.Terminated | None = None
    probing: concurrent.futures.Future[bool] | None = None

    def _waiting_reason(self) -> str | None:
        if self.error:
            return "CreateContainerConfigError"
        return "CrashLoopBackOff" if self.restarts else None

    def state(self) -> podstatus.ContainerState:
        skipped = self.launch is None and not self.error
        return podstatus.ContainerState(
            name=self.name,
            image=self.image,
            ready=self.ready or skipped,
            running_since=self.running_since,
            waiting_reason=self._waiting_reason(),
            waiting_message=self.error,
            restart_count=self.restarts,
            last_terminated=self.last_terminated,
            terminated=self.terminated,
        )


@dataclasses.dataclass(slots=True)
class Pod:
    """A pod the runner plays the kubelet for."""

    uid: str
    namespace: str
    name: str
    node: str
    gpu: str | None
    ip: str
    host_ip: str
    started_at: str
    where: podfiles.PodDir
    restart_policy: str
    raw: dict[str, Any]
    containers: list[Container] = dataclasses.field(default_factory=list)
    sent: dict[str, Any] | None = None
    ready_at: str = ""
    deleting_until: float | None = None
    next_refresh: float = 0.0
    token: str | None = None
    log: Path = Path("/dev/null")


class Runner:
    """The main loop; construct, then ``run(stop)``."""

    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._settings = settings
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._pods: dict[str, Pod] = {}
        self._nodes: dict[str, tuple[bool, str | None, str]] = {}
        self._ips = podstatus.IpAllocator(settings.pod_cidr)
        self._probes = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="probe")
        self._told: set[str] = set()
        self.synced = threading.Event()
        self.snapshot: list[dict[str, Any]] = []

    # ---- the loop -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._adopt_records()
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True, name="watch")
        watcher.start()
        try:
            while not stop.is_set():
                self._drain(timeout=TICK_SECONDS)
                for pod in list(self._pods.values()):
                    self._step(pod)
                self.snapshot = [_describe(p) for p in self._pods.values()]
        finally:
            self._shutdown()
            self._probes.shutdown(wait=False, cancel_futures=True)

    def _drain(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                kind, obj = self._events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                return
            self._on_event(kind, obj)

    def _watch(self, stop: threading.Event) -> None:
        """List and watch pods bound to a node; events go to the queue."""
        selector = "spec.nodeName!="
        while not stop.is_set():
            try:
                listed = self._core.list_pod_for_all_namespaces(field_selector=selector)
                self._events.put(("SYNC", {"items": [p.to_dict() for p in listed.items]}))
                version = listed.metadata.resource_version if listed.metadata else None
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=version, timeout_seconds=60,
                )  # fmt: skip
                for event in stream:
                    if stop.is_set():
                        return
                    self._events.put((str(event["type"]), event["object"].to_dict()))
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("pod watch failed (%s); re-listing", exc.status)
                    stop.wait(1.0)
            except Exception as exc:  # the API server may restart; keep watching
                log.warning("pod watch failed (%s); re-listing", type(exc).__name__)
                stop.wait(1.0)

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "SYNC":
            present = {p["metadata"]["uid"] for p in obj["items"]}
            for uid in list(self._pods):
                if uid not in present:
                    self._gone(self._pods[uid])
            for item in obj["items"]:
                self._on_pod(item)
            self.synced.set()
        elif kind == "DELETED":
            pod = self._pods.get(str(obj["metadata"]["uid"]))
            if pod is not None:
                self._gone(pod)
        else:
            self._on_pod(obj)

    # ---- nodes ----------------------------------------------------------------------
    def _node(self, name: str) -> tuple[bool, str | None, str]:
        """(is a KWOK node, its GPU generation, its IP), cached."""
        if name not in self._nodes:
            try:
                node = self._core.read_node(name).to_dict()
            except ApiException:
                return False, None, ""
            meta = node["metadata"]
            kwok = (meta.get("annotations") or {}).get(KWOK_ANNOTATION) == "fake"
            gpu = catalog.identify(meta.get("labels") or {})
            addresses = (node.get("status") or {}).get("addresses") or []
            ip = next((a["address"] for a in addresses if a["type"] == "InternalIP"), "127.0.0.1")
            self._nodes[name] = (kwok, gpu.name if gpu else None, ip)
        return self._nodes[name]

    # ---- pods -----------------------------------------------------------------------
    def _on_pod(self, raw: dict[str, Any]) -> None:
        meta, spec = raw["metadata"], raw.get("spec") or {}
        pod = self._pods.get(str(meta["uid"]))
        if pod is None:
            kwok, _, _ = self._node(str(spec.get("node_name") or ""))
            if not kwok or (raw.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            if meta.get("deletion_timestamp"):
                self._final_delete(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
                return  # nothing of it runs here (already stopped, or from before a restart)
            pod = self._admit(raw)
        pod.raw = raw
        if meta.get("deletion_timestamp") and pod.deleting_until is None:
            self._begin_delete(pod)

    def _admit(self, raw: dict[str, Any]) -> Pod:
        meta, spec = raw["metadata"], raw["spec"]
        _, gpu, host_ip = self._node(str(spec["node_name"]))
        status = raw.get("status") or {}
        ip = status.get("pod_ip") or self._ips.allocate(self._ips_in_use())
        pod = Pod(
            uid=str(meta["uid"]),
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            node=str(spec["node_name"]),
            gpu=gpu,
            ip=str(ip),
            host_ip=host_ip,
            started_at=_now(),
            where=podfiles.PodDir.of(
                self._settings.pods_root, meta["namespace"], meta["name"], meta["uid"]
            ),
            restart_policy=workloads.restart_policy(raw),
            raw=raw,
        )
        pod.log = self._settings.logs_root / "pods" / f"{pod.namespace}_{pod.name}.log"
        self._pods[pod.uid] = pod
        self._prepare(pod, gpu)
        return pod

    def _ips_in_use(self) -> set[str]:
        return {p.ip for p in self._pods.values()}

    def _context(self, pod: Pod, gpu: str | None) -> workloads.PodContext:
        configmaps, secrets = self._lookups(pod)
        return workloads.PodContext(
            pod_ip=pod.ip, node_gpu=gpu, speed=self._settings.speed,
            load_seconds=self._settings.load_seconds, configmaps=configmaps, secrets=secrets,
        )  # fmt: skip

    def _lookups(self, pod: Pod) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        names_cm, names_secret = workloads.references(pod.raw)
        configmaps: dict[str, dict[str, str]] = {}
        secrets: dict[str, dict[str, str]] = {}
        for name in names_cm:
            try:
                found = self._core.read_namespaced_config_map(name, pod.namespace)
                configmaps[name] = dict(found.data or {})
            except ApiException:
                continue
        for name in names_secret:
            try:
                secret = self._core.read_namespaced_secret(name, pod.namespace)
                secrets[name] = workloads.decode_secret(secret.data)
            except ApiException:
                continue
        return configmaps, secrets

    def _prepare(self, pod: Pod, gpu: str | None) -> None:
        """Work out each container's launch; errors are kept on the container (and
        logged when they first appear or change)."""
        before = {c.name: c.error for c in pod.containers}
        pod.containers = []
        try:
            ctx = self._context(pod, gpu)
        except ApiException as exc:
            ctx = workloads.PodContext(pod_ip=pod.ip, node_gpu=gpu)
            log.warning("%s/%s: reading its ConfigMaps/Secrets failed: %s",
                        pod.namespace, pod.name, exc.status)  # fmt: skip
        for container in pod.raw["spec"].get("containers") or []:
            name, image = str(container["name"]), str(container.get("image") or "")
            try:
                found = workloads.launch(container, pod.raw, ctx)
            except workloads.WorkloadError as exc:
                pod.containers.append(Container(name, image, None, error=str(exc)))
                if before.get(name) == str(exc):
                    continue
                log.warning("%s/%s container %s cannot run: %s", pod.namespace, pod.name,
                            name, exc)  # fmt: skip
                continue
            if isinstance(found, workloads.Skipped):
                if image not in self._told:
                    self._told.add(image)
                    log.info("image %s is not run by the twin (%s): Ready as KWOK makes it",
                             image, found.reason)  # fmt: skip
                pod.containers.append(Container(name, image, None, running_since=pod.started_at))
                continue
            pod.containers.append(Container(name, image, self._with_files(pod, container, found)))

    def _with_files(
        self, pod: Pod, container: dict[str, Any], launch: workloads.Launch
    ) -> workloads.Launch:
        self._refresh_files(pod)
        mounts = podfiles.mount_map(container, pod.where)
        mapped = workloads.mapped(launch, mounts)  # a simulator's GPU UUID file too
        if launch.kind == "gpufleet" and self._token_for(pod) is not None:
            mapped = dataclasses.replace(
                mapped, env=(*mapped.env, ("KUBECONFIG", str(pod.where.kubeconfig)))
            )
        return mapped

    def _token_for(self, pod: Pod) -> str | None:
        """A pod-bound ServiceAccount token (TokenRequest), made once per pod; None when
        the pod mounts no token or the request failed."""
        spec = pod.raw["spec"]
        if spec.get("automount_service_account_token") is False:
            return None
        if pod.token is None:
            account = spec.get("service_account_name") or "default"
            body = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[],
                    expiration_seconds=podfiles.TOKEN_SECONDS,
                    bound_object_ref=client.V1BoundObjectReference(
                        api_version="v1", kind="Pod", name=pod.name, uid=pod.uid
                    ),
                )
            )
            try:
                made = self._core.create_namespaced_service_account_token(
                    account, pod.namespace, body
                )
            except ApiException as exc:
                log.warning("%s/%s: TokenRequest for %s failed: %s", pod.namespace, pod.name,
                            account, exc.status)  # fmt: skip
                return None
            if made.status is None:
                return None
            pod.token = str(made.status.token)
            podfiles.write_kubeconfig(
                pod.where, server=self._settings.server, ca=self._settings.ca,
                token=pod.token, namespace=pod.namespace,
            )  # fmt: skip
        return pod.token

    def _refresh_files(self, pod: Pod) -> None:
        """(Re)write the pod's volumes, as the kubelet refreshes ConfigMap/Secret volumes."""
        configmaps, secrets = self._lookups(pod)
        podfiles.materialise(pod.raw, pod.where, configmaps=configmaps, secrets=secrets,
                             token=self._token_for(pod))  # fmt: skip
        pod.next_refresh = time.monotonic() + REFRESH_SECONDS

    # ---- one pod, one tick ----------------------------------------------------------
    def _step(self, pod: Pod) -> None:
        now = time.monotonic()
        if pod.deleting_until is not None:
            self._finish_delete(pod, now)
            return
        if now >= pod.next_refresh and self._retry_config(pod):
            pod.next_refresh = now + REFRESH_SECONDS
        for c in pod.containers:
            self._step_container(pod, c, now)
        if any(c.launch and c.launch.kind == "gpufleet" for c in pod.containers) and (
            now >= pod.next_refresh
        ):
            try:
                self._refresh_files(pod)
            except ApiException:
                pod.next_refresh = now + REFRESH_SECONDS
        self._report(pod)

    def _retry_config(self, pod: Pod) -> bool:
        """Work the launches out again while a container could not be configured (a
        Secret or ConfigMap it needs may exist by now), as the kubelet retries; True
        when it tried."""
        if not any(c.error for c in pod.containers) or any(c.proc for c in pod.containers):
            return False
        self._prepare(pod, pod.gpu)
        return True

    def _step_container(self, pod: Pod, c: Container, now: float) -> None:
        if c.launch is None:
            return
        if c.proc is None:
            if c.terminated is None and now >= c.next_start:
                self._start(pod, c)
            return
        code = podprocs.exit_code(c.proc)
        if code is not None:
            self._exited(pod, c, code, now)
            return
        self._probe(pod, c, now)

    def _start(self, pod: Pod, c: Container) -> None:
        assert c.launch is not None
        env = podfiles.base_env(pod.where) | dict(c.launch.env)
        pod.where.home.mkdir(parents=True, exist_ok=True)
        c.proc = podprocs.start(c.launch, env=env, log=pod.log)
        c.running_since, c.ready, c.failures = _now(), False, 0
        c.next_probe = 0.0
        self._record(pod)
        log.info("%s/%s: started %s (%s, pid %d) at %s", pod.namespace, pod.name, c.name,
                 c.launch.kind, c.proc.pid, pod.ip)  # fmt: skip

    def _exited(self, pod: Pod, c: Container, code: int, now: float) -> None:
        ended = podstatus.Terminated(
            exit_code=code, reason="Completed" if code == 0 else "Error", finished_at=_now(),
            message=processes.log_tail(c.proc, 5) if c.proc else "",
        )  # fmt: skip
        c.proc, c.running_since, c.ready = None, None, False
        log.info("%s/%s: %s exited with %d", pod.namespace, pod.name, c.name, code)
        if pod.restart_policy == "Never" or (pod.restart_policy == "OnFailure" and code == 0):
            c.terminated = ended
            return
        c.last_terminated = ended
        c.restarts += 1
        c.next_start = now + workloads.backoff_seconds(c.restarts)
        self._record(pod)

    def _probe(self, pod: Pod, c: Container, now: float) -> None:
        assert c.launch is not None
        check = c.launch.probe
        if check.kind == "running":
            c.ready = True
            return
        if c.probing is not None:
            if not c.probing.done():
                return
            ok = c.probing.result()
            c.probing = None
            if ok:
                c.ready, c.failures = True, 0
            else:
                c.failures += 1
                if c.ready and c.failures >= check.failure_threshold:
                    c.ready = False
            period = check.period_seconds if c.ready else min(1.0, check.period_seconds)
            c.next_probe = now + period
        if now >= c.next_probe:
            c.probing = self._probes.submit(podprocs.probe, check, pod.ip)

    # ---- status ---------------------------------------------------------------------
    def _report(self, pod: Pod) -> None:
        states = [c.state() for c in pod.containers]
        ready = bool(states) and all(s.ready for s in states)
        if ready and not pod.ready_at:
            pod.ready_at = _now()
        elif not ready and pod.ready_at:
            pod.ready_at = ""
        body = podstatus.status(
            pod_ip=pod.ip, host_ip=pod.host_ip, started_at=pod.started_at,
            now=pod.ready_at or pod.started_at, containers=states,
            restart_policy=pod.restart_policy,
        )  # fmt: skip
        if body == pod.sent:
            return
        try:
            self._core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": body})
        except ApiException as exc:
            if exc.status == 404:
                self._gone(pod)
            return
        pod.sent = body

    # ---- deletion -------------------------------------------------------------------
    def _begin_delete(self, pod: Pod) -> None:
        grace = workloads.grace_seconds(pod.raw)
        pod.deleting_until = time.monotonic() + grace
        for c in pod.containers:
            if c.proc is not None:
                podprocs.signal_group(c.proc, signal.SIGTERM)
        log.info("%s/%s: deleting (grace %.0fs)", pod.namespace, pod.name, grace)

    def _finish_delete(self, pod: Pod, now: float) -> None:
        live = [c for c in pod.containers if c.proc is not None and processes.alive(c.proc)]
        for c in pod.containers:
            if c.proc is not None:
                podprocs.exit_code(c.proc)  # reap
        if live and now < (pod.deleting_until or now):
            return
        for c in live:
            assert c.proc is not None
            podprocs.signal_group(c.proc, signal.SIGKILL)
            podprocs.exit_code(c.proc)
        if self._final_delete(pod.namespace, pod.name, pod.uid):
            self._forget(pod)

    def _final_delete(self, namespace: str, name: str, uid: str) -> bool:
        """Remove the pod object (grace 0, this UID only); False to try again later."""
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("%s/%s: final delete failed: %s", namespace, name, exc.status)
                return False
        return True

    def _gone(self, pod: Pod) -> None:
        """The pod object vanished: stop what still runs for it, at once."""
        for c in pod.containers:
            if c.proc is not None:
                self._stop_now(c.proc, SHUTDOWN_GRACE_SECONDS)
        self._forget(pod)

    def _forget(self, pod: Pod) -> None:
        self._pods.pop(pod.uid, None)
        podfiles.remove(pod.where)

    @staticmethod
    def _stop_now(proc: processes.Proc, grace: float) -> None:
        podprocs.signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and podprocs.exit_code(proc) is None:
            time.sleep(0.05)
        if processes.alive(proc):
            podprocs.signal_group(proc, signal.SIGKILL)
            podprocs.exit_code(proc)

    def _shutdown(self) -> None:
        procs = [c.proc for p in self._pods.values() for c in p.containers if c.proc]
        for proc in procs:
            podprocs.signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while time.monotonic() < deadline and any(processes.alive(p) for p in procs):
            for proc in procs:
                podprocs.exit_code(proc)
            time.sleep(0.05)
        for proc in procs:
            podprocs.signal_group(proc, signal.SIGKILL)

    # ---- records: adopting processes after a restart ----------------------------------
    def _record(self, pod: Pod) -> None:
        doc = {
            "uid": pod.uid, "namespace": pod.namespace, "name": pod.name, "ip": pod.ip,
            "procs": {c.name: dataclasses.asdict(c.proc) for c in pod.containers if c.proc},
        }  # fmt: skip
        podfiles.write_atomic(pod.where.record, json.dumps(doc))

    def _adopt_records(self) -> None:
        """Stop processes left by an earlier runner; their pods are started afresh."""
        if not self._settings.pods_root.is_dir():
            return
        for record in self._settings.pods_root.glob("*/record.json"):
            try:
                doc = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            for proc in doc.get("procs", {}).values():
                self._stop_now(processes.Proc(**proc), SHUTDOWN_GRACE_SECONDS)
            self._ips.seen(str(doc.get("ip", "")))


def _container_state(c: Container) -> str:
    if c.error:
        return "error"
    if c.launch is None:
        return "not-run"
    if c.terminated is not None:
        return "terminated"
    if c.proc is None:
        return "back-off" if c.restarts else "starting"
    return "ready" if c.ready else "not-ready"


def _describe(pod: Pod) -> dict[str, Any]:
    """One pod as ``dev-cluster status`` lists it."""
    return {
        "namespace": pod.namespace, "pod": pod.name, "node": pod.node, "gpu": pod.gpu,
        "ip": pod.ip, "deleting": pod.deleting_until is not None,
        "containers": [{
            "name": c.name, "kind": c.launch.kind if c.launch else "not-run",
            "port": c.launch.probe.port if c.launch else None,
            "pid": c.proc.pid if c.proc else None, "state": _container_state(c),
            "restarts": c.restarts, "error": c.error,
        } for c in pod.containers],
    }  # fmt: skip


def recorded_procs(pods_root: Path) -> list[processes.Proc]:
    """Every pod process a runner recorded under ``pods_root`` (for ``down``)."""
    out: list[processes.Proc] = []
    for record in pods_root.glob("*/record.json") if pods_root.is_dir() else []:
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        out += [processes.Proc(**p) for p in doc.get("procs", {}).values()]
    return out


def _serve(runner: Runner, port: int) -> http.server.ThreadingHTTPServer:
    """``/healthz`` (200 once the first pod list was applied) and ``/pods`` (JSON)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok = runner.synced.is_set()
                self._send(200 if ok else 503, b"ok" if ok else b"syncing", "text/plain")
            elif self.path == "/pods":
                self._send(200, json.dumps(runner.snapshot).encode(), "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server


def main(api: client.ApiClient, settings: Settings, *, port: int) -> None:
    """Run until SIGTERM/SIGINT, serving health and the pod list on ``port``."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = Runner(api, settings)
    server = _serve(runner, port)
    try:
        runner.run(stop)
    finally:
        server.shutdown()
