"""The pod of one variant: vLLM arguments, GPU resources, placement, volumes, probes.

Pure. ``pod_spec`` turns a planned variant into the PodSpec of its Deployment:

- ``vllm serve`` with the planned TP and the variant's context, memory and quantization,
  the per-step token budget of the pool's workload class (``planning.batching``), media
  URLs fetched only from the pool's allowed domains (none by default), and the model's
  own code run only when the pool asks and the operator allows it
  (``variants.trust_problems``);
- ``nvidia.com/gpu`` requested and limited to TP; **required** node affinity to the
  generation's GPU Feature Discovery product strings *and* its memory label (a range,
  as ``hardware.catalog`` matches it); the GPU taint tolerated;
- ``/dev/shm`` as a memory emptyDir (NCCL and vLLM's workers exchange tensors through
  it), a model-cache volume (an emptyDir, or the claim of a ``pvc://`` source), the hub
  token from the referenced Secret, the NCCL environment from TP 4 on;
- a startup probe whose budget grows with the weights to load, readiness and liveness
  on ``/health``; a non-root, read-only-root, no-capability security context (vLLM only
  needs writable HOME, cache and /tmp, which are volumes here);
- the server runs as ``gpufleet worker -- vllm serve …`` with the variant's generation in
  ``GPUFLEET_GPU_*`` (``gpufleet.worker.claim``), so a pod on the wrong GPU exits naming
  it; vLLM's own OpenAI image, which has no ``gpufleet``, runs ``vllm serve`` unchecked;
- with ``serving.gpuHealth.enabled``, a ``gpu-agent`` sidecar (``gpufleet gpu-agent``, the
  operator's gpufleet image or its ``agent_image`` setting) with the pool's limits, DCGM
  metrics and ``/health`` on the container port ``labels.GPU_AGENT_PORT_NAME``, where
  routers look for its verdict; it judges only the pod's GPUs, whose UUIDs the worker
  writes to ``GPU_UUIDS_FILE`` in a small memory volume both containers mount.
"""

from __future__ import annotations

import math

from gpufleet import labels, operatorconfig, podgpus
from gpufleet.api import modelpool
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import bodies, restricted
from gpufleet.controller.modelpool.variants import VariantDecision
from gpufleet.hardware import catalog, nccl
from gpufleet.planning import batching

CONTAINER = "vllm"
AGENT_CONTAINER = "gpu-agent"
# The agent runs the operator's own program; ``render.deployment`` takes another image.
DEFAULT_AGENT_IMAGE = operatorconfig.DEFAULT_ROUTER_IMAGE
# Where the worker lists the GPUs the device plugin gave the server, for the agent
# (``gpufleet.podgpus``): a memory emptyDir, writable by the server, read-only
# for the agent.
GPU_UUIDS_ENV = podgpus.ENV
GPU_UUIDS_VOLUME = "gpu-uuids"
GPU_UUIDS_DIR = "/run/gpufleet"
GPU_UUIDS_FILE = f"{GPU_UUIDS_DIR}/gpu-uuids"
WORKER_COMMAND = ["gpufleet", "worker", "--", "vllm", "serve"]
VLLM_COMMAND = ["vllm", "serve"]
# vLLM's OpenAI image has no gpufleet in it (devcluster.vllmargs.VLLM_IMAGE likewise).
VLLM_OPENAI_REPOSITORY = "vllm-openai"
PORT_NAME = "http"
CACHE_DIR = "/cache"
MODELS_DIR = "/models"
RUN_AS = 1000
# Loading weights: a fixed start (image, CUDA init, CUDA graphs) plus ~100 MB/s of
# weights fetched and copied to the GPUs; pessimistic on purpose, a slow start is
# cheaper than a restart loop that never finishes loading.
STARTUP_BASE_SECONDS = 300
STARTUP_SECONDS_PER_GB = 10
PROBE_PERIOD_SECONDS = 10
# vLLM's --dtype for 16-bit weights and --quantization for load-time / kernel formats;
# int8 and int4 checkpoints carry their quantization_config, which vLLM reads itself.
_DTYPE_FLAG = {"bf16": "bfloat16", "fp16": "float16"}
_QUANTIZATION_FLAG = {"fp8": "fp8", "awq": "awq", "gptq": "gptq"}
# vLLM fetches an http(s) media URL only when its host is in --allowed-media-domains,
# but an empty list allows every host (vllm/multimodal: MediaConnector); a name under the
# reserved .invalid TLD (RFC 6761) is one no URL can resolve, and vLLM's refusal quotes it.
NO_MEDIA_DOMAIN = "media-urls-disabled.invalid"
GPU_TOLERATION = bodies.Toleration(key=catalog.GPU_RESOURCE, operator="Exists", effect="NoSchedule")


def tensor_parallel_size(decision: VariantDecision) -> int:
    tp = decision.plan.tensor_parallel_size
    if tp is None:
        raise ValueError(f"variant {decision.name} is infeasible: {decision.plan.reason}")
    return tp


def model_location(source: str) -> tuple[str, list[str]]:
    """``--model`` and the extra flags a weight source needs (revision, load format)."""
    scheme, _, rest = source.partition("://")
    if scheme == "hf":
        repo, _, revision = rest.partition("@")
        return repo, (["--revision", revision] if revision else [])
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return f"{MODELS_DIR}/{claim}/{path}".rstrip("/"), []
    return source, ["--load-format", "runai_streamer"]


def media_domains(spec: ModelPoolSpec) -> list[str]:
    """``--allowed-media-domains``' values: the pool's hosts, or one no URL can name."""
    return list(spec.serving.allowed_media_domains) or [NO_MEDIA_DOMAIN]


def vllm_args(spec: ModelPoolSpec, decision: VariantDecision) -> list[str]:
    """The arguments after ``vllm serve``; owned flags first, the variant's extras last.

    The model is the positional argument, so a stray value among the extras is an
    argument vLLM refuses rather than a second model that replaces it; the list-valued
    flags come before single-valued ones, so no extra can add to their lists.
    """
    model, source_flags = model_location(spec.model.source)
    variant, plan = decision.variant, decision.plan
    args = [
        model,
        "--allowed-media-domains", *media_domains(spec),
        "--served-model-name", spec.model.name,
        "--tensor-parallel-size", str(tensor_parallel_size(decision)),
        "--max-model-len", str(plan.max_model_len),
        "--gpu-memory-utilization", f"{variant.gpu_memory_utilization:g}",
        "--port", str(spec.serving.port),
        "--max-num-seqs", str(spec.serving.max_num_seqs),
        *source_flags,
    ]  # fmt: skip
    budget = batching.batched_tokens(spec.workload_class, decision.gpu)
    if budget is not None:
        args += ["--max-num-batched-tokens", str(budget)]
    if decision.dtype in _DTYPE_FLAG:
        args += ["--dtype", _DTYPE_FLAG[decision.dtype]]
    if decision.dtype in _QUANTIZATION_FLAG:
        args += ["--quantization", _QUANTIZATION_FLAG[decision.dtype]]
    if spec.model.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if spec.serving.trust_remote_code:  # variants.trust_problems: only where allowed
        args.append("--trust-remote-code")
    if spec.serving.enable_prefix_caching:
        args.append("--enable-prefix-caching")
    return [*args, *variant.extra_args]


def env(spec: ModelPoolSpec, tp: int) -> list[bodies.EnvVar]:
    out = [
        bodies.EnvVar(name="HOME", value=CACHE_DIR),
        bodies.EnvVar(name="HF_HOME", value=f"{CACHE_DIR}/huggingface"),
        bodies.EnvVar(name="VLLM_NO_USAGE_STATS", value="1"),
        # vLLM checks a media URL's host against --allowed-media-domains, not the hosts
        # it is redirected to.
        bodies.EnvVar(name="VLLM_MEDIA_URL_ALLOW_REDIRECTS", value="0"),
    ]
    ref = spec.hub_token_secret_ref
    if ref is not None:
        selector = bodies.SecretKeySelector(name=ref.name, key=ref.key)
        out.append(bodies.EnvVar(name="HF_TOKEN", valueFrom={"secretKeyRef": selector}))
    if tp >= 4:
        out += [bodies.EnvVar(name=k, value=v) for k, v in nccl.ENV]
    return out


def claim_env(gpu: catalog.GpuSpec) -> list[bodies.EnvVar]:
    """The generation ``gpufleet worker`` checks the GPUs against (the node affinity's)."""
    return [
        bodies.EnvVar(name="GPUFLEET_GPU_GENERATION", value=gpu.name),
        bodies.EnvVar(name="GPUFLEET_GPU_PRODUCTS", value=",".join(gpu.products)),
        bodies.EnvVar(name="GPUFLEET_GPU_MEMORY_MIB", value=str(gpu.memory_mib)),
    ]


def lists_gpus(spec: ModelPoolSpec) -> bool:
    """Whether the server lists the pod's GPUs for the health agent: the agent runs and
    the server is ``gpufleet worker``. vLLM's own image runs plain ``vllm serve``, which
    lists nothing; its agent judges every GPU NVML shows it rather than wait for a list
    that never comes."""
    health = spec.serving.gpu_health.enabled
    return health and server_command(spec.serving.image) == WORKER_COMMAND


def gpu_uuids_env(spec: ModelPoolSpec) -> list[bodies.EnvVar]:
    """Where ``gpufleet worker`` lists the pod's GPUs for the health agent (when it runs)."""
    if not lists_gpus(spec):
        return []
    return [bodies.EnvVar(name=GPU_UUIDS_ENV, value=GPU_UUIDS_FILE)]


def server_command(image: str) -> list[str]:
    """``gpufleet worker -- vllm serve``, or plain ``vllm serve`` in vLLM's own image."""
    repository = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return list(VLLM_COMMAND if repository == VLLM_OPENAI_REPOSITORY else WORKER_COMMAND)


def startup_budget_seconds(weights_bytes: int) -> int:
    return STARTUP_BASE_SECONDS + math.ceil(weights_bytes / 1e9) * STARTUP_SECONDS_PER_GB


def _probe(*, period: int, failures: int) -> bodies.Probe:
    return bodies.Probe(
        httpGet=bodies.HttpGet(path="/health", port=PORT_NAME),
        periodSeconds=period,
        failureThreshold=failures,
        timeoutSeconds=5,
    )


def node_affinity(gpu: catalog.GpuSpec) -> bodies.Affinity:
    """Required: one of the generation's product strings and memory within tolerance."""
    slack = math.ceil(gpu.memory_mib * catalog.MEMORY_TOLERANCE)
    low, high = str(gpu.memory_mib - slack - 1), str(gpu.memory_mib + slack + 1)
    term = bodies.NodeSelectorTerm(
        matchExpressions=[
            {"key": catalog.PRODUCT_LABEL, "operator": "In", "values": list(gpu.products)},
            {"key": catalog.MEMORY_LABEL, "operator": "Gt", "values": [low]},
            {"key": catalog.MEMORY_LABEL, "operator": "Lt", "values": [high]},
        ]
    )
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}  # fmt: skip


def tolerations(spec: ModelPoolSpec) -> list[bodies.Toleration]:
    out = [GPU_TOLERATION]
    for t in spec.placement.tolerations:
        item = bodies.Toleration(operator=t.operator)
        if t.key:
            item["key"] = t.key
        if t.value:
            item["value"] = t.value
        if t.effect:
            item["effect"] = t.effect
        if t.toleration_seconds is not None:
            item["tolerationSeconds"] = t.toleration_seconds
        out.append(item)
    return out


def resources(tp: int) -> bodies.ResourceRequirements:
    """TP GPUs; host CPU and memory per GPU for tokenisation and weight staging."""
    gpus = str(tp)
    memory = f"{16 * tp + shm_gib(tp)}Gi"
    return bodies.ResourceRequirements(
        requests={"cpu": str(2 * tp), "memory": memory, catalog.GPU_RESOURCE: gpus},
        limits={"memory": memory, catalog.GPU_RESOURCE: gpus},
    )


def shm_gib(tp: int) -> int:
    return 2 * tp


def volumes(spec: ModelPoolSpec, tp: int) -> tuple[list[bodies.Volume], list[bodies.VolumeMount]]:
    vols = [
        bodies.Volume(name="dshm", emptyDir={"medium": "Memory", "sizeLimit": f"{shm_gib(tp)}Gi"}),
        bodies.Volume(name="model-cache", emptyDir={"sizeLimit": "1Ti"}),
        bodies.Volume(name="tmp", emptyDir={"sizeLimit": "4Gi"}),
    ]
    mounts = [
        bodies.VolumeMount(name="dshm", mountPath="/dev/shm"),
        bodies.VolumeMount(name="model-cache", mountPath=CACHE_DIR),
        bodies.VolumeMount(name="tmp", mountPath="/tmp"),
    ]
    if lists_gpus(spec):
        vols.append(
            bodies.Volume(name=GPU_UUIDS_VOLUME, emptyDir={"medium": "Memory", "sizeLimit": "1Mi"})
        )
        mounts.append(bodies.VolumeMount(name=GPU_UUIDS_VOLUME, mountPath=GPU_UUIDS_DIR))
    scheme, _, rest = spec.model.source.partition("://")
    if scheme == "pvc":
        claim = rest.partition("/")[0]
        pvc = bodies.PvcSource(claimName=claim, readOnly=True)
        vols.append(bodies.Volume(name="model-weights", persistentVolumeClaim=pvc))
        mounts.append(
            bodies.VolumeMount(
                name="model-weights", mountPath=f"{MODELS_DIR}/{claim}", readOnly=True
            )
        )
    return vols, mounts


def container(spec: ModelPoolSpec, decision: VariantDecision) -> bodies.Container:
    tp = tensor_parallel_size(decision)
    _, mounts = volumes(spec, tp)
    startup = startup_budget_seconds(decision.plan.weights_bytes)
    return bodies.Container(
        name=CONTAINER,
        image=spec.serving.image,
        command=server_command(spec.serving.image),
        args=vllm_args(spec, decision),
        env=[*env(spec, tp), *claim_env(decision.gpu), *gpu_uuids_env(spec)],
        ports=[{"name": PORT_NAME, "containerPort": spec.serving.port, "protocol": "TCP"}],
        resources=resources(tp),
        volumeMounts=mounts,
        startupProbe=_probe(
            period=PROBE_PERIOD_SECONDS, failures=math.ceil(startup / PROBE_PERIOD_SECONDS)
        ),
        readinessProbe=_probe(period=5, failures=3),
        livenessProbe=_probe(period=15, failures=4),
        securityContext=restricted.container(),
    )


def _field_env(name: str, path: str) -> bodies.EnvVar:
    return bodies.EnvVar(name=name, valueFrom={"fieldRef": {"fieldPath": path}})


def agent_args(health: modelpool.GpuHealth, *, listed: bool = True) -> list[str]:
    """``gpufleet gpu-agent``'s arguments: the pod's address, the pool's limits and, when
    the server lists the pod's GPUs (``listed``), where."""
    scope = ["--gpu-uuids-file", GPU_UUIDS_FILE] if listed else []
    return [
        "--host", "$(POD_IP)",
        "--port", str(modelpool.GPU_AGENT_PORT),
        "--hostname", "$(NODE_NAME)",
        "--max-temperature", str(health.max_temperature_celsius),
        "--max-memory-percent", f"{health.max_memory_percent:g}",
        "--max-uncorrectable-ecc", str(health.max_uncorrectable_ecc_errors),
        "--xid-hold-seconds", str(health.xid_hold_seconds),
        *scope,
    ]  # fmt: skip


def _agent_probe(*, period: int, failures: int) -> bodies.Probe:
    return bodies.Probe(
        httpGet=bodies.HttpGet(path="/healthz", port=labels.GPU_AGENT_PORT_NAME),
        periodSeconds=period,
        failureThreshold=failures,
        timeoutSeconds=2,
    )


def agent_container(spec: ModelPoolSpec, *, image: str) -> bodies.Container:
    """The GPU health sidecar. It requests no GPU (that would take one from vLLM): NVIDIA's
    container runtime gives it NVML (``utility``, no compute) for the GPUs
    ``NVIDIA_VISIBLE_DEVICES`` names, which are the node's, so it judges only those the
    server listed in ``GPU_UUIDS_FILE`` (docs/operator.md, "GPU health"; with vLLM's own
    image, which lists none, every GPU it reads — ``lists_gpus``). Its probes are
    on ``/healthz`` (the process), never on the verdict: a hot GPU drains the pod at the
    routers without making it unready, so rollouts and PDBs keep counting it."""
    agent_port = bodies.ContainerPort(
        name=labels.GPU_AGENT_PORT_NAME, containerPort=modelpool.GPU_AGENT_PORT, protocol="TCP"
    )
    listed = lists_gpus(spec)
    mount = bodies.VolumeMount(name=GPU_UUIDS_VOLUME, mountPath=GPU_UUIDS_DIR, readOnly=True)
    return bodies.Container(
        name=AGENT_CONTAINER,
        image=image,
        command=["gpufleet", "gpu-agent"],
        args=agent_args(spec.serving.gpu_health, listed=listed),
        env=[
            _field_env("POD_IP", "status.podIP"),
            _field_env("NODE_NAME", "spec.nodeName"),
            bodies.EnvVar(name="NVIDIA_VISIBLE_DEVICES", value="all"),
            bodies.EnvVar(name="NVIDIA_DRIVER_CAPABILITIES", value="utility"),
        ],
        ports=[agent_port],
        resources=bodies.ResourceRequirements(
            requests={"cpu": "50m", "memory": "96Mi"}, limits={"memory": "192Mi"}
        ),
        volumeMounts=[mount] if listed else [],
        startupProbe=_agent_probe(period=2, failures=30),
        readinessProbe=_agent_probe(period=10, failures=3),
        livenessProbe=_agent_probe(period=15, failures=4),
        securityContext=restricted.container(),
    )


def pod_spec(
    spec: ModelPoolSpec, decision: VariantDecision, *, agent_image: str = DEFAULT_AGENT_IMAGE
) -> bodies.PodSpec:
    tp = tensor_parallel_size(decision)
    vols, _ = volumes(spec, tp)
    containers = [container(spec, decision)]
    if spec.serving.gpu_health.enabled:
        containers.append(agent_container(spec, image=agent_image))
    out = bodies.PodSpec(
        containers=containers,
        volumes=vols,
        affinity=node_affinity(decision.gpu),
        tolerations=tolerations(spec),
        securityContext=restricted.pod(run_as=RUN_AS),
        terminationGracePeriodSeconds=60,
        enableServiceLinks=False,
        automountServiceAccountToken=False,
    )
    if spec.placement.node_selector:
        out["nodeSelector"] = dict(spec.placement.node_selector)
    if spec.placement.priority_class_name:
        out["priorityClassName"] = spec.placement.priority_class_name
    return out
