"""The operator's pure builders: variant plans, pod spec, child intents (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet import labels as contract
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller import owned
from gpufleet.controller.modelpool import podspec, render, variants
from gpufleet.hardware import catalog
from gpufleet.operatorconfig import OperatorConfig

POOL = render.PoolRef(name="llama", namespace="ns", uid="uid-1")


def spec(**over: Any) -> ModelPoolSpec:
    model = {
        "name": "meta-llama/Llama-3.1-70B-Instruct",
        "source": "hf://meta-llama/L@main",
        "catalogName": "llama-3.1-70b",
        "maxModelLen": 8192,
    } | over.pop("model", {})
    body = {
        "model": model,
        "variants": over.pop("variants", [{"name": "h100", "gpu": "H100-80GB"}]),
    } | over
    return ModelPoolSpec.model_validate(body)


def only(s: ModelPoolSpec) -> variants.VariantDecision:
    return variants.plan_pool(s)[0]


@pytest.mark.parametrize(
    ("variant", "tp", "feasible"),
    [
        ({"name": "a", "gpu": "H100-80GB"}, 2, True),
        ({"name": "a", "gpu": "A100-40GB"}, 4, True),
        ({"name": "a", "gpu": "H200"}, 2, True),
        ({"name": "a", "gpu": "A100-40GB", "tensorParallelSize": 2}, None, False),
        ({"name": "a", "gpu": "B200"}, 1, True),
    ],
)
def test_plan_pool_uses_each_variants_settings(
    variant: dict[str, Any], tp: int | None, feasible: bool
) -> None:
    decision = only(spec(variants=[variant]))
    assert (decision.plan.tensor_parallel_size, decision.feasible) == (tp, feasible)


@pytest.mark.parametrize(
    ("dtype", "kv", "present", "absent"),
    [
        ("bf16", "auto", [("--dtype", "bfloat16")], ["--quantization", "--kv-cache-dtype"]),
        ("fp8", "fp8", [("--quantization", "fp8"), ("--kv-cache-dtype", "fp8")], ["--dtype"]),
        ("awq", "auto", [("--quantization", "awq")], ["--dtype"]),
        ("int8", "auto", [], ["--dtype", "--quantization"]),
    ],
)
def test_vllm_args_carry_precision(
    dtype: str, kv: str, present: list[tuple[str, str]], absent: list[str]
) -> None:
    s = spec(model={"dtype": dtype, "kvCacheDtype": kv})
    args = podspec.vllm_args(s, only(s))
    for name, value in present:
        assert args[args.index(name) + 1] == value
    for name in absent:
        assert name not in args


def test_vllm_args_owned_flags_then_extras() -> None:
    s = spec(variants=[{"name": "a", "gpu": "H100-80GB", "extraArgs": ["--enforce-eager"],
                        "gpuMemoryUtilization": 0.85}])  # fmt: skip
    args = podspec.vllm_args(s, only(s))
    assert args[0] == "meta-llama/L"  # positional: a stray extra value cannot replace it
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert pairs["--allowed-media-domains"] == podspec.NO_MEDIA_DOMAIN
    assert pairs["--revision"] == "main"
    assert pairs["--served-model-name"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert pairs["--tensor-parallel-size"] == "4"  # the planner's choice at 0.85
    assert pairs["--max-model-len"] == "8192"
    assert pairs["--gpu-memory-utilization"] == "0.85"
    assert pairs["--port"] == "8000"
    assert "--enable-prefix-caching" in args
    assert args[-1] == "--enforce-eager"


@pytest.mark.parametrize(
    ("source", "model", "flags"),
    [
        ("hf://org/repo", "org/repo", []),
        ("hf://org/repo@v2", "org/repo", ["--revision", "v2"]),
        ("pvc://weights/llama/70b", "/models/weights/llama/70b", []),
        ("s3://bucket/llama", "s3://bucket/llama", ["--load-format", "runai_streamer"]),
    ],
)
def test_model_location(source: str, model: str, flags: list[str]) -> None:
    assert podspec.model_location(source) == (model, flags)


@pytest.mark.parametrize(("gpu", "nccl"), [("H100-80GB", False), ("A100-40GB", True)])
def test_pod_gpu_resources_affinity_tolerations_nccl(gpu: str, nccl: bool) -> None:
    s = spec(variants=[{"name": "a", "gpu": gpu}], hubTokenSecretRef={"name": "hf"})
    d = only(s)
    tp = str(d.plan.tensor_parallel_size)
    pod = podspec.pod_spec(s, d)
    c = pod["containers"][0]
    assert c["resources"]["requests"][catalog.GPU_RESOURCE] == tp
    assert c["resources"]["limits"][catalog.GPU_RESOURCE] == tp
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    exprs = {
        (e["key"], e["operator"]): e.get("values")
        for e in terms["nodeSelectorTerms"][0]["matchExpressions"]
    }
    spec_gpu = catalog.get(gpu)
    assert exprs[(catalog.PRODUCT_LABEL, "In")] == list(spec_gpu.products)
    low = int(exprs[(catalog.MEMORY_LABEL, "Gt")][0])  # type: ignore[index]
    high = int(exprs[(catalog.MEMORY_LABEL, "Lt")][0])  # type: ignore[index]
    assert low < spec_gpu.memory_mib < high
    other = catalog.get("A100-80GB" if gpu == "H100-80GB" else "A10G")
    assert not low < other.memory_mib < high or other.primary_product not in spec_gpu.products
    assert podspec.GPU_TOLERATION in pod["tolerations"]
    names = {e["name"] for e in c["env"]}
    assert ("NCCL_ASYNC_ERROR_HANDLING" in names) is nccl
    assert "HF_TOKEN" in names
    assert {v["name"] for v in pod["volumes"]} >= {"dshm", "model-cache"}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"].get("medium") == "Memory"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


def test_startup_probe_budget_grows_with_the_model() -> None:
    small = spec(model={"catalogName": "llama-3.1-8b"})
    big = spec()
    budget = [
        podspec.container(s, only(s))["startupProbe"]["failureThreshold"] for s in (small, big)
    ]
    assert budget[0] < budget[1]
    assert budget[0] * podspec.PROBE_PERIOD_SECONDS >= podspec.STARTUP_BASE_SECONDS


def test_deployment_labels_owner_hash_and_replicas() -> None:
    s = spec()
    d = only(s)
    dep = render.deployment(POOL, s, d, replicas=2)
    assert dep["metadata"]["name"] == "llama-h100"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[contract.POOL] == "llama" and labels[contract.VARIANT] == "h100"
    assert labels[contract.GPU] == "H100-80GB" and labels[contract.TENSOR_PARALLEL_SIZE] == "2"
    assert labels[contract.MODEL] == "meta-llama_Llama-3.1-70B-Instruct"
    assert dep["spec"]["selector"]["matchLabels"] == contract.variant_selector("llama", "h100")
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["spec"]["replicas"] == 2
    unscaled = render.deployment(POOL, s, d, replicas=None)
    assert "replicas" not in unscaled["spec"]
    hashes = {owned.spec_hash(x) for x in (dep, unscaled)}
    assert len(hashes) == 2
    assert dep["metadata"]["annotations"][contract.SPEC_HASH] == owned.spec_hash(dep)
    assert owned.spec_hash(render.deployment(POOL, s, d, replicas=2)) == owned.spec_hash(dep)


def test_a_spot_variant_labels_its_pods_and_on_demand_adds_nothing() -> None:
    on_demand = render.deployment(POOL, spec(), only(spec()), replicas=1)
    spot = spec(variants=[{"name": "h100", "gpu": "H100-80GB", "capacityType": "spot"}])
    spot_dep = render.deployment(POOL, spot, only(spot), replicas=1)
    assert contract.CAPACITY_TYPE not in on_demand["spec"]["template"]["metadata"]["labels"]
    assert spot_dep["spec"]["template"]["metadata"]["labels"][contract.CAPACITY_TYPE] == "spot"
    # The selector is immutable: the capacity type must stay out of it.
    assert spot_dep["spec"]["selector"] == on_demand["spec"]["selector"]


def test_service_and_budget_select_the_whole_pool() -> None:
    s = spec()
    svc = render.service(POOL, s)
    pdb = render.disruption_budget(POOL)
    assert svc["spec"]["selector"] == contract.pool_labels("llama")
    assert pdb["spec"]["selector"]["matchLabels"] == contract.pool_labels("llama")
    assert svc["spec"]["ports"][0]["port"] == 8000


@pytest.mark.parametrize(
    ("pool", "variant", "problem"),
    [
        ("llama", "h100", None),
        ("9lives", "h100", "DNS-1035"),
        ("p" + "x" * 58, "h100", "64 characters"),
        ("p" * 64, "a", "DNS-1035"),
    ],
)
def test_spec_problems(pool: str, variant: str, problem: str | None) -> None:
    one = spec(variants=[{"name": variant, "gpu": "H100-80GB"}])
    found = variants.spec_problems(pool, one, config=OperatorConfig())
    if problem is None:
        assert found == ()
    else:
        assert any(problem in p for p in found)


@pytest.mark.parametrize(
    ("text", "label"),
    [("meta-llama/Llama-3.1-8B", "meta-llama_Llama-3.1-8B"), ("a" * 80, "a" * 63), ("/x/", "x")],
)
def test_label_value(text: str, label: str) -> None:
    assert contract.label_value(text) == label


def test_the_server_runs_behind_gpufleet_worker_with_the_variants_generation() -> None:
    s = spec(variants=[{"name": "a", "gpu": "H100-80GB"}])
    c = podspec.container(s, only(s))
    assert s.serving.image == "ghcr.io/gpufleet/gpufleet-worker:0.1.0"
    assert c["command"] == ["gpufleet", "worker", "--", "vllm", "serve"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    h100 = catalog.get("H100-80GB")
    assert env["GPUFLEET_GPU_GENERATION"] == "H100-80GB"
    assert env["GPUFLEET_GPU_PRODUCTS"] == ",".join(h100.products)
    assert env["GPUFLEET_GPU_MEMORY_MIB"] == str(h100.memory_mib)


@pytest.mark.parametrize(
    ("image", "command"),
    [
        ("vllm/vllm-openai:v0.14.1", ["vllm", "serve"]),  # no gpufleet in vLLM's own image
        ("docker.io/vllm/vllm-openai@sha256:ab12", ["vllm", "serve"]),
        ("ghcr.io/gpufleet/gpufleet-worker:0.2.0", ["gpufleet", "worker", "--", "vllm", "serve"]),
        ("ghcr.io/acme/vllm-openai-plus:1", ["gpufleet", "worker", "--", "vllm", "serve"]),
    ],
)
def test_server_command_by_image(image: str, command: list[str]) -> None:
    assert podspec.server_command(image) == command


def test_the_gpu_agent_sidecar_carries_the_pools_limits() -> None:
    health = {"maxTemperatureCelsius": 80, "maxMemoryPercent": 95, "xidHoldSeconds": 60}
    s = spec(serving={"gpuHealth": health})
    deployment = render.deployment(POOL, s, only(s), replicas=1, agent_image="reg.io/gf:1")
    server, agent = deployment["spec"]["template"]["spec"]["containers"]
    assert (agent["name"], agent["image"]) == ("gpu-agent", "reg.io/gf:1")
    assert agent["command"] == ["gpufleet", "gpu-agent"]
    flags = dict(zip(agent["args"][::2], agent["args"][1::2], strict=True))
    assert flags == {
        "--host": "$(POD_IP)", "--port": "9400", "--hostname": "$(NODE_NAME)",
        "--max-temperature": "80", "--max-memory-percent": "95",
        "--max-uncorrectable-ecc": "0", "--xid-hold-seconds": "60",
        "--gpu-uuids-file": podspec.GPU_UUIDS_FILE,
    }  # fmt: skip
    assert agent["ports"] == [{"name": contract.GPU_AGENT_PORT_NAME, "containerPort": 9400,
                               "protocol": "TCP"}]  # fmt: skip
    assert catalog.GPU_RESOURCE not in agent["resources"]["requests"]  # takes no GPU
    assert agent["readinessProbe"]["httpGet"]["path"] == "/healthz"  # never the verdict
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
              for e in agent["env"] if "valueFrom" in e}  # fmt: skip
    assert fields == {"POD_IP": "status.podIP", "NODE_NAME": "spec.nodeName"}
    assert server["name"] == podspec.CONTAINER


def test_gpu_health_off_renders_no_sidecar_and_frees_its_port() -> None:
    s = spec(serving={"gpuHealth": {"enabled": False}, "port": 9400})
    pod = podspec.pod_spec(s, only(s))
    (only_server,) = pod["containers"]
    assert only_server["ports"][0]["containerPort"] == 9400
    assert podspec.GPU_UUIDS_VOLUME not in {v["name"] for v in pod["volumes"]}
    assert podspec.GPU_UUIDS_ENV not in {e["name"] for e in only_server["env"]}
    with pytest.raises(ValueError, match="port must not be 9400, the GPU health agent's"):
        spec(serving={"port": 9400})


def test_the_server_lists_its_gpus_where_only_the_agent_reads_them() -> None:
    """The worker writes the pod's GPU UUIDs into a memory volume the agent mounts
    read-only and names in --gpu-uuids-file: the agent sees the node's GPUs, judges the pod's."""
    pod = podspec.pod_spec(spec(), only(spec()))
    server, agent = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == podspec.GPU_UUIDS_VOLUME]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    mounts = {c["name"]: [m for m in c["volumeMounts"] if m["name"] == podspec.GPU_UUIDS_VOLUME]
              for c in (server, agent)}  # fmt: skip
    assert mounts[server["name"]] == [{"name": "gpu-uuids", "mountPath": "/run/gpufleet"}]
    assert mounts[agent["name"]] == [
        {"name": "gpu-uuids", "mountPath": "/run/gpufleet", "readOnly": True}
    ]
    assert {"name": "GPUFLEET_GPU_UUIDS_FILE", "value": "/run/gpufleet/gpu-uuids"} in server["env"]
    args = agent["args"]
    assert args[args.index("--gpu-uuids-file") + 1] == "/run/gpufleet/gpu-uuids"


def test_with_vllms_own_image_the_agent_judges_every_gpu_it_reads() -> None:
    """Plain ``vllm serve`` lists no GPUs: the agent gets no list to wait for (it would
    wait for ever and judge nothing) and so judges the GPUs NVML shows it."""
    s = spec(serving={"image": "vllm/vllm-openai:v0.14.1"})
    pod = podspec.pod_spec(s, only(s))
    server, agent = pod["containers"]
    assert server["command"] == ["vllm", "serve"]
    assert "--gpu-uuids-file" not in agent["args"]
    assert podspec.GPU_UUIDS_VOLUME not in {v["name"] for v in pod["volumes"]}
    assert podspec.GPU_UUIDS_ENV not in {e["name"] for e in server["env"]}
    assert agent["volumeMounts"] == []
