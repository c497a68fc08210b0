"""What the twin runs for each container of a pod on a KWOK node (pure).

The pod runner hands ``launches`` a raw pod (``to_dict()`` form: snake_case keys), the
GPU generation of its node and the ConfigMaps and Secrets the pod refers to; it gets
back one ``Launch`` per container it can run, and one ``Skipped`` per container it
cannot:

- a vLLM container (``vllm serve …``, the OpenAI api_server module, either behind
  ``gpufleet worker --``, or vLLM's OpenAI or gpufleet's worker image) becomes
  ``gpufleet sim`` with the node's generation and the container's serving flags
  (``gpufleet.devcluster.vllmargs``), listening at the pod's IP; its simulated GPUs are
  served at ``DCGM_PORT`` — or, when the pod has a GPU health agent, at
  ``SIM_GPU_PORT``, where the agent reads them (``--source twin``) to serve
  ``DCGM_PORT`` itself, as it does on a real node; when the container names a GPU UUID
  file (``podgpus.ENV``) the simulator lists its GPUs there, as
  ``gpufleet worker`` would, and the agent judges the GPUs listed;
- a container of gpufleet's own image runs the ``gpufleet`` command of its
  command/args, with the container's environment resolved as the kubelet would
  (``value``, ``$(VAR)`` references, ``fieldRef``, ``secretKeyRef``,
  ``configMapKeyRef``);
- anything else is ``Skipped`` with the image named, and keeps the status KWOK would
  give it.

Paths inside the container (volume mounts) are mapped by the runner; this module only
names which mount each argument or value refers to (``MountMap``).
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from gpufleet import labels, podgpus
from gpufleet.devcluster import vllmargs

RawPod = Mapping[str, Any]
Kind = Literal["vllm", "gpufleet"]
GPUFLEET_IMAGE = "gpufleet"
DCGM_PORT = 9400
# Where a simulator serves its GPUs when the pod's gpu-agent holds DCGM_PORT.
SIM_GPU_PORT = 9401
GPU_AGENT_COMMAND = "gpu-agent"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class WorkloadError(ValueError):
    """A container the twin recognises but cannot run; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """How the runner decides a container is ready: an HTTP GET, a TCP connect, or
    (``kind`` "running") the process being alive."""

    kind: Literal["http", "tcp", "running"]
    port: int | None = None
    path: str = "/"
    period_seconds: float = 10.0
    failure_threshold: int = 3
    timeout_seconds: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """One process to run for one container: ``gpufleet`` + ``args``."""

    container: str
    kind: Kind
    image: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    probe: Probe


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """A container the twin does not run (its image is named in the runner's log)."""

    container: str
    image: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class PodContext:
    """What the kubelet would know about the pod when starting its containers."""

    pod_ip: str
    node_gpu: str | None
    speed: float = 1.0
    load_seconds: float | None = None
    configmaps: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)


def image_repository(image: str) -> str:
    """The last path element of an image reference, without tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_gpufleet_image(image: str) -> bool:
    return image_repository(image) == GPUFLEET_IMAGE


def _field(pod: RawPod, path: str) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if path.startswith(("metadata.labels['", "metadata.annotations['")):
        which, _, rest = path.partition("['")
        source = meta.get("labels" if which.endswith("labels") else "annotations") or {}
        return str(source.get(rest.rstrip("']"), ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("node_name"),
        "spec.serviceAccountName": spec.get("service_account_name"),
        "status.podIP": status.get("pod_ip"),
        "status.hostIP": status.get("host_ip"),
    }
    if path not in values:
        raise WorkloadError(f"env fieldRef {path!r} is not supported by the twin")
    return str(values[path] or "")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names replaced, unknown kept, ``$$`` → ``$``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


def _key_ref(
    ref: Mapping[str, Any], source: Mapping[str, Mapping[str, str]], what: str
) -> str | None:
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    data = source.get(name)
    if data is None or key not in data:
        if ref.get("optional"):
            return None
        raise WorkloadError(f"{what} {name!r} has no key {key!r} (or does not exist)")
    return data[key]


def resolve_env(
    container: Mapping[str, Any], pod: RawPod, ctx: PodContext
) -> tuple[tuple[str, str], ...]:
    """The container's environment in order, each value expanded against those before it."""
    out: dict[str, str] = {}
    for item in container.get("env") or []:
        name = str(item["name"])
        value_from = item.get("value_from") or {}
        value: str | None
        if value_from.get("field_ref"):
            with_ip = {**pod, "status": {**(pod.get("status") or {}), "pod_ip": ctx.pod_ip}}
            value = _field(with_ip, str(value_from["field_ref"]["field_path"]))
        elif value_from.get("secret_key_ref"):
            value = _key_ref(value_from["secret_key_ref"], ctx.secrets, "Secret")
        elif value_from.get("config_map_key_ref"):
            value = _key_ref(value_from["config_map_key_ref"], ctx.configmaps, "ConfigMap")
        elif value_from:
            raise WorkloadError(f"env {name}: only fieldRef, secretKeyRef, configMapKeyRef")
        else:
            value = expand(str(item.get("value") or ""), out)
        if value is not None:
            out[name] = value
    return tuple(out.items())


def decode_secret(data: Mapping[str, str | bytes] | None) -> dict[str, str]:
    """A Secret's ``data`` (base64) as text."""
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


def _port_number(container: Mapping[str, Any], port: object) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["container_port"])
    return None


def probe_of(container: Mapping[str, Any]) -> Probe:
    """The readiness probe (else the startup probe) as the runner runs it."""
    raw = container.get("readiness_probe") or container.get("startup_probe")
    if not raw:
        return Probe(kind="running")
    timed = Probe(
        kind="running",
        period_seconds=float(raw.get("period_seconds") or 10),
        failure_threshold=int(raw.get("failure_threshold") or 3),
        timeout_seconds=float(raw.get("timeout_seconds") or 1),
    )
    if raw.get("http_get"):
        http = raw["http_get"]
        port = _port_number(container, http.get("port"))
        return dataclasses.replace(timed, kind="http", port=port, path=str(http.get("path") or "/"))
    if raw.get("tcp_socket"):
        port = _port_number(container, raw["tcp_socket"].get("port"))
        return dataclasses.replace(timed, kind="tcp", port=port)
    return timed


def _vllm(container: Mapping[str, Any], pod: RawPod, ctx: PodContext) -> Launch | None:
    image = str(container.get("image") or "")
    env = dict(resolve_env(container, pod, ctx))
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    try:
        serve = vllmargs.parse(image=image, command=command, args=args)
    except vllmargs.VllmArgsError as exc:
        raise WorkloadError(str(exc)) from exc
    if serve is None:
        return None
    if ctx.node_gpu is None:
        raise WorkloadError("vLLM container on a node without a known GPU generation")
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        sim = vllmargs.sim_args(
            serve,
            gpu=ctx.node_gpu,
            host=ctx.pod_ip,
            model_hint=annotations.get(labels.CATALOG_MODEL_ANNOTATION)
            or annotations.get(labels.MODEL_ANNOTATION),
            speed=ctx.speed,
            load_seconds=ctx.load_seconds,
            metrics_port=SIM_GPU_PORT if has_gpu_agent(pod) else DCGM_PORT,
        )
    except vllmargs.VllmArgsError as exc:
        raise WorkloadError(str(exc)) from exc
    if env.get(podgpus.ENV):
        sim += ["--gpu-uuids-file", env[podgpus.ENV]]  # a mount path: the runner maps it
    return Launch(
        container=str(container["name"]),
        kind="vllm",
        image=image,
        args=("sim", *sim),
        env=(),
        probe=probe_of(container),
    )


def _gpufleet_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    command = [expand(str(c), env) for c in container.get("command") or ["gpufleet"]]
    return [*command, *(expand(str(a), env) for a in container.get("args") or [])]


def has_gpu_agent(pod: RawPod) -> bool:
    """Whether one of the pod's containers is ``gpufleet gpu-agent`` (gpufleet's image)."""
    return any(
        is_gpufleet_image(str(c.get("image") or ""))
        and _gpufleet_argv(c, {})[1:2] == [GPU_AGENT_COMMAND]
        for c in (pod.get("spec") or {}).get("containers") or []
    )


def _twin_gpus(argv: list[str], ctx: PodContext) -> list[str]:
    """A gpu-agent reads the pod's simulator instead of NVML (the only change the twin
    makes to it)."""
    if argv[1:2] != [GPU_AGENT_COMMAND]:
        return argv
    return [*argv, "--source", "twin", "--twin-url", f"http://{ctx.pod_ip}:{SIM_GPU_PORT}"]


def _gpufleet(container: Mapping[str, Any], pod: RawPod, ctx: PodContext) -> Launch | None:
    image = str(container.get("image") or "")
    if not is_gpufleet_image(image):
        return None
    env = resolve_env(container, pod, ctx)
    full = _twin_gpus(_gpufleet_argv(container, dict(env)), ctx)
    if not full or full[0].rsplit("/", 1)[-1] != "gpufleet":
        raise WorkloadError(f"gpufleet image runs {full[0] if full else 'nothing'!r}, "
                            "not the gpufleet command")  # fmt: skip
    return Launch(
        container=str(container["name"]),
        kind="gpufleet",
        image=image,
        args=tuple(full[1:]),
        env=env,
        probe=probe_of(container),
    )


def launch(container: Mapping[str, Any], pod: RawPod, ctx: PodContext) -> Launch | Skipped:
    """What to run for ``container``; ``WorkloadError`` when it is ours but cannot run."""
    found = _gpufleet(container, pod, ctx) or _vllm(container, pod, ctx)
    if found is not None:
        return found
    image = str(container.get("image") or "")
    return Skipped(container=str(container["name"]), image=image, reason="not vLLM or gpufleet")


def launches(pod: RawPod, ctx: PodContext) -> list[Launch | Skipped]:
    return [launch(c, pod, ctx) for c in (pod.get("spec") or {}).get("containers") or []]


def references(pod: RawPod) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env and volumes refer to."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for container in spec.get("containers") or []:
        for item in container.get("env") or []:
            value_from = item.get("value_from") or {}
            if value_from.get("secret_key_ref"):
                secrets.add(str(value_from["secret_key_ref"]["name"]))
            if value_from.get("config_map_key_ref"):
                configmaps.add(str(value_from["config_map_key_ref"]["name"]))
    for volume in spec.get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            if source.get("config_map"):
                configmaps.add(str(source["config_map"]["name"]))
            if source.get("secret"):
                ref = source["secret"]
                secrets.add(str(ref.get("secret_name") or ref.get("name")))
    return configmaps, secrets


@dataclasses.dataclass(frozen=True, slots=True)
class MountMap:
    """Container paths (mount points) and the host folders standing in for them."""

    mounts: tuple[tuple[str, str], ...]

    def host_path(self, text: str) -> str:
        """``text`` with a leading mount path replaced by its host folder, else unchanged;
        ``--flag=/mount/x`` maps its value."""
        flag, eq, value = text.partition("=")
        if eq and flag.startswith("-"):
            return f"{flag}={self.host_path(value)}"
        for mount, host in sorted(self.mounts, key=lambda m: -len(m[0])):
            if text == mount or text.startswith(mount.rstrip("/") + "/"):
                return host + text[len(mount.rstrip("/")) :]
        return text


def mapped(launch_: Launch, mounts: MountMap) -> Launch:
    """``launch_`` with mounted container paths in its args and env mapped to host paths."""
    return dataclasses.replace(
        launch_,
        args=tuple(mounts.host_path(a) for a in launch_.args),
        env=tuple((k, mounts.host_path(v)) for k, v in launch_.env),
    )


def volume_files(
    volume: Mapping[str, Any],
    *,
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, str] | None:
    """Relative path → content of a configMap, secret or projected volume; None for
    other volume kinds (emptyDir and the like get an empty folder)."""
    sources = [volume]
    if volume.get("projected"):
        sources = list(volume["projected"].get("sources") or [])
    files: dict[str, str] | None = None
    for source in sources:
        ref, data = _volume_source(source, configmaps, secrets)
        if ref is None:
            continue
        files = files or {}
        items = ref.get("items")
        if items:
            files |= {str(i["path"]): data[str(i["key"])] for i in items if str(i["key"]) in data}
        else:
            files |= dict(data)
    return files


def _volume_source(
    source: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> tuple[Mapping[str, Any] | None, Mapping[str, str]]:
    if source.get("config_map"):
        ref = source["config_map"]
        return ref, configmaps.get(str(ref["name"]), {})
    if source.get("secret"):
        ref = source["secret"]
        name = str(ref.get("secret_name") or ref.get("name"))
        return ref, secrets.get(name, {})
    return None, {}


def mount_points(container: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(volume name, mount path, read-only) of each of the container's volume mounts."""
    return [
        (str(m["name"]), str(m["mount_path"]), bool(m.get("read_only")))
        for m in container.get("volume_mounts") or []
    ]


def restart_policy(pod: RawPod) -> str:
    return str((pod.get("spec") or {}).get("restart_policy") or "Always")


def grace_seconds(pod: RawPod) -> float:
    """Seconds a deleted pod's processes get between SIGTERM and SIGKILL."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    value = meta.get("deletion_grace_period_seconds")
    if value is None:
        value = spec.get("termination_grace_period_seconds")
    return float(30 if value is None else value)


def backoff_seconds(restarts: int, *, cap: float = 30.0) -> float:
    """The kubelet's doubling restart back-off (1 s, 2 s, 4 s …), capped lower for the twin."""
    return float(min(cap, 2 ** max(0, restarts - 1)))


def describe(items: Sequence[Launch | Skipped]) -> str:
    return ", ".join(
        f"{i.container}={i.kind}" if isinstance(i, Launch) else f"{i.container}=skipped"
        for i in items
    )
