"""vLLM container arguments → simulator settings (table-driven), and the operator's pods
rendered from every example ModelPool parsed back."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import pytest
import yaml

from gpufleet import labels as contract
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.controller.modelpool import podspec, render, variants
from gpufleet.devcluster import vllmargs
from gpufleet.devcluster.vllmargs import VllmServe
from gpufleet.sim import command

EXAMPLES = sorted(pathlib.Path(__file__).parents[2].joinpath("examples").glob("modelpool-*.yaml"))
API = vllmargs.API_SERVER_MODULE
M = "meta-llama/Llama-3.1-8B-Instruct"
SERVE = ["vllm", "serve"]


@pytest.mark.parametrize(
    ("image", "cmd", "args", "model"),
    [
        ("any", SERVE, ["--model", M], M),
        ("any", ["vllm", "serve", M], [], M),
        ("any", ["vllm", "serve", M, "--port", "9000"], [], M),
        ("any", [], ["vllm", "serve", M], M),
        ("any", ["vllm"], ["serve", M], M),
        ("any", ["/usr/local/bin/vllm", "serve"], [M], M),
        ("any", ["python3", "-m", API], ["--model", M], M),
        ("any", ["python", "-u", "-m", API, "--model", M], [], M),
        ("any", ["/usr/bin/python3.12", "-m", API], ["--model", M], M),
        ("vllm/vllm-openai:v0.11.0", [], ["--model", M], M),
        ("docker.io/vllm/vllm-openai@sha256:0123abcd", [], ["--model", M], M),
        ("registry.example.com:5000/mirror/vllm-openai:latest", [], [M, "-tp", "2"], M),
        ("vllm/vllm-openai:v0.11.0", [], [], None),
        ("vllm/vllm-openai:v0.11.0", SERVE, ["--model", M], M),
        # gpufleet worker in front (the operator's pods), or the worker image's entrypoint
        ("any", ["gpufleet", "worker", "--", "vllm", "serve"], [M, "-tp", "2"], M),
        ("any", ["/opt/gpufleet/bin/gpufleet", "worker", "--check-only", "--"], ["--model", M], M),
        ("any", ["gpufleet", "worker", "--", "python3", "-m", API, "--model", M], [], M),
        ("ghcr.io/gpufleet/gpufleet-worker:0.1.0", [], ["--model", M], M),
        ("ghcr.io/gpufleet/gpufleet-worker:0.1.0", [], ["vllm", "serve", M], M),
        ("ghcr.io/gpufleet/gpufleet-worker@sha256:ab", [], [], None),
    ],
)
def test_recognises_vllm_containers(
    image: str, cmd: list[str], args: list[str], model: str | None
) -> None:
    serve = vllmargs.parse(image=image, command=cmd, args=args)
    assert serve is not None
    assert serve.model == model


@pytest.mark.parametrize(
    ("image", "cmd", "args"),
    [
        ("nginx:1.27", [], []),
        ("ghcr.io/acme/gpufleet:1.0", ["gpufleet", "router"], []),
        ("any", ["vllm", "bench", "serve"], ["--model", M]),
        ("any", ["vllm"], []),
        ("vllm/vllm-openai:v0.11.0", ["bash", "-c", f"vllm serve {M}"], []),
        ("any", ["python3", "-m", "http.server"], []),
        ("any", ["python3", "app.py", "-m", API], []),
        ("any", ["python3", "-m"], []),
        ("vllm/vllm-openai-rocm:v0.11.0", [], ["--model", M]),
        ("any", [], ["--model", M]),
        ("any", ["gpufleet", "worker"], ["vllm", "serve", M]),  # no "--": not the worker's form
        ("any", ["gpufleet", "worker", "--", "bash", "-c", f"vllm serve {M}"], []),
        ("ghcr.io/gpufleet/gpufleet:0.1.0", [], ["--model", M]),
    ],
)
def test_other_containers_are_not_vllm(image: str, cmd: list[str], args: list[str]) -> None:
    assert vllmargs.parse(image=image, command=cmd, args=args) is None


def serve(*args: str) -> VllmServe:
    parsed = vllmargs.parse(image="any", command=SERVE, args=[M, *args])
    assert parsed is not None
    return parsed


# (args after the model, VllmServe field, value): the twin's reading, which tests/vllm
# also holds against real vLLM's parser.
FLAG_SPELLINGS: list[tuple[list[str], str, object]] = [
    (["--max-model-len", "4096"], "max_model_len", 4096),
    (["--max-model-len=4096"], "max_model_len", 4096),
    (["--max_model_len", "4096"], "max_model_len", 4096),
    (["--max_model_len=4096"], "max_model_len", 4096),
    (["--max-model-len", "32k"], "max_model_len", 32000),
    (["--max-model-len", "25.6k"], "max_model_len", 25600),
    (["--max-model-len", "16K"], "max_model_len", 16384),
    (["--max-model-len", "auto"], "max_model_len", None),
    (["--max-model-len", "-1"], "max_model_len", None),
    ([], "max_model_len", None),
    (["-tp", "4"], "tensor_parallel_size", 4),
    (["-tp=4"], "tensor_parallel_size", 4),
    (["--tensor-parallel-size", "4"], "tensor_parallel_size", 4),
    (["--tensor_parallel_size=4"], "tensor_parallel_size", 4),
    ([], "tensor_parallel_size", 1),
    (["-q", "awq"], "quantization", "awq"),
    (["--quantization=gptq"], "quantization", "gptq"),
    (["--quantization", "None"], "quantization", None),
    (["--served-model-name", "a", "b", "--port", "9000"], "served_model_names", ("a", "b")),
    (["--served-model-name=a"], "served_model_names", ("a",)),
    (["--served_model_name", "a"], "served_model_names", ("a",)),
    (["--enable-prefix-caching"], "enable_prefix_caching", True),
    (["--no-enable-prefix-caching"], "enable_prefix_caching", False),
    (["--no_enable_prefix_caching"], "enable_prefix_caching", False),
    (["--enable-prefix-caching", "--no-enable-prefix-caching"], "enable_prefix_caching", False),
    ([], "enable_prefix_caching", None),
    (["--max-num-seqs", "128"], "max_num_seqs", 128),
    (["--max-num-batched-tokens", "8k"], "max_num_batched_tokens", 8000),
    (["--gpu-memory-utilization", "0.95"], "gpu_memory_utilization", 0.95),
    (["--gpu_memory_utilization=0.8"], "gpu_memory_utilization", 0.8),
    # A unique beginning of a flag is that flag (argparse's abbreviations).
    (["--tensor-par", "2"], "tensor_parallel_size", 2),
    (["--max-model-l=2048"], "max_model_len", 2048),
    (["--dtype", "half"], "dtype", "half"),
    ([], "dtype", "auto"),
    (["--kv-cache-dtype", "fp8_e4m3"], "kv_cache_dtype", "fp8_e4m3"),
    (["--host", "0.0.0.0"], "host", "0.0.0.0"),
    (["--port", "9000"], "port", 9000),
    ([], "port", 8000),
    # A repeated flag: the last one wins, as with argparse.
    (["--port", "9000", "--port=9001"], "port", 9001),
    # Valued flags take the following token, then parsing goes on.
    (["--revision", "main", "--port", "9000"], "port", 9000),
    (["--load-format", "runai_streamer", "-tp", "2"], "tensor_parallel_size", 2),
    (["--trust-remote-code", "--port", "9000"], "port", 9000),
    (["-O3", "--port", "9000"], "port", 9000),
    # Repeatable and list flags as vLLM 0.30 takes them (its parser, tests/vllm).
    (["--middleware", "a.B", "--middleware", "c.D", "--port", "9000"], "port", 9000),
    (["--cudagraph-capture-sizes", "1", "2", "4", "--port", "9000"], "port", 9000),
    (["--api-key", "k1", "k2", "-tp", "2"], "tensor_parallel_size", 2),
    (["--allowed-media-domains", "a.example", "b.example", "-tp", "2"], "tensor_parallel_size", 2),
]


@pytest.mark.parametrize(("args", "field", "value"), FLAG_SPELLINGS)
def test_flag_spellings(args: list[str], field: str, value: object) -> None:
    assert getattr(serve(*args), field) == value


# (command, args, model): which token is the model; tests/vllm asks vLLM too.
POSITIONAL_MODEL: list[tuple[list[str], list[str], str]] = [
    # Boolean flags never take the positional model as their value.
    (SERVE, ["--enforce-eager", M], M),
    (SERVE, ["--no-enable-chunked-prefill", M], M),
    (SERVE, ["--enable-prefix-caching", M, "--port", "9000"], M),
    # An unknown valued flag takes the next token; the model comes after.
    (SERVE, ["--download-dir", "/cache", M], M),
    # --model alone is the model (vLLM 0.30 reads it as the positional one).
    (SERVE, ["--model", M, "--port", "9000"], M),
    # --served-model-name takes every value up to the next flag (argparse nargs="+").
    (SERVE, ["--model", M, "--served-model-name", "a", "b"], M),
    # --middleware repeats with one value each; list flags swallow what follows.
    (SERVE, ["--middleware", "a.B", M], M),
    (SERVE, ["--logits-processors", "a.B", "c.D", "--model", M], M),
    (SERVE, ["--cudagraph-capture-sizes", "1", "2", "--model", M], M),
]


@pytest.mark.parametrize(("cmd", "args", "model"), POSITIONAL_MODEL)
def test_positional_model_among_flags(cmd: list[str], args: list[str], model: str) -> None:
    parsed = vllmargs.parse(image="any", command=cmd, args=args)
    assert parsed is not None and parsed.model == model


# (args after the model, flag named in the refusal): vLLM refuses them too (tests/vllm).
REFUSED: list[tuple[list[str], str]] = [
    (["--port", "http"], "--port"),
    (["--port"], "--port"),
    (["--max-model-len", "1.5K"], "--max-model-len"),
    (["--max-model-len", "4k5"], "--max-model-len"),
    (["-tp", "two"], "--tensor-parallel-size"),
    (["--gpu-memory-utilization", "most"], "--gpu-memory-utilization"),
    (["--max-num-seqs", "--port", "9000"], "--max-num-seqs"),
    # vLLM 0.30 reads K as 1024 but has no Ki; decimals only with k/m/g/t.
    (["--max-model-len", "1Ki"], "--max-model-len"),
    # Switches vLLM 0.30 no longer has, a renamed one, one that never existed.
    (["--calculate-kv-scales"], "--calculate-kv-scales"),
    (["--disable-async-output-proc"], "--disable-async-output-proc"),
    (["--disable-frontend-multiprocessing"], "--disable-frontend-multiprocessing"),
    (["--disable-log-requests"], "--disable-log-requests"),
    (["--disable-mm-preprocessor-cache"], "--disable-mm-preprocessor-cache"),
    (["--enable-lora-bias"], "--enable-lora-bias"),
    (["--cuda-graph-sizes", "1", "2"], "--cuda-graph-sizes"),
    (["--no-some-future-flag"], "--no-some-future-flag"),
    (["--max-num", "8"], "--max-num"),  # the beginning of three flags
    (["--enable-prefix-caching=false"], "--enable-prefix-caching"),  # booleans take none
    (["--model", "other"], "--model"),  # two models
]


@pytest.mark.parametrize(("args", "flag"), REFUSED)
def test_values_vllm_would_reject_name_the_flag(args: list[str], flag: str) -> None:
    with pytest.raises(vllmargs.VllmArgsError, match=flag):
        serve(*args)


@pytest.mark.parametrize(
    ("fields", "dtype", "kv"),
    [
        ({}, "bf16", "auto"),
        ({"dtype": "bfloat16"}, "bf16", "auto"),
        ({"dtype": "half"}, "fp16", "auto"),
        ({"dtype": "float16"}, "fp16", "auto"),
        ({"quantization": "fp8"}, "fp8", "auto"),
        ({"quantization": "fp8", "dtype": "bfloat16"}, "fp8", "auto"),
        ({"quantization": "awq_marlin", "dtype": "half"}, "awq", "auto"),
        ({"quantization": "gptq_marlin"}, "gptq", "auto"),
        ({"quantization": "experts_int8"}, "int8", "auto"),
        ({"kv_cache_dtype": "fp8"}, "bf16", "fp8"),
        ({"kv_cache_dtype": "fp8_e5m2"}, "bf16", "fp8"),
        ({"kv_cache_dtype": "bfloat16"}, "bf16", "bf16"),
    ],
)
def test_precision_maps_to_the_simulators_names(
    fields: dict[str, Any], dtype: str, kv: str
) -> None:
    args = vllmargs.sim_args(VllmServe(model=M, **fields), gpu="H100-80GB", host="10.0.0.1")
    assert (value(args, "--dtype"), value(args, "--kv-cache-dtype")) == (dtype, kv)


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"dtype": "float32"}, "--dtype"),
        ({"quantization": "bitsandbytes"}, "--quantization"),
        ({"quantization": "compressed-tensors"}, "--quantization"),
        ({"kv_cache_dtype": "int8"}, "--kv-cache-dtype"),
    ],
)
def test_precision_the_simulator_cannot_follow(fields: dict[str, Any], flag: str) -> None:
    with pytest.raises(vllmargs.VllmArgsError, match=f"{flag} .*accepted"):
        vllmargs.sim_args(VllmServe(model=M, **fields), gpu="H100-80GB", host="10.0.0.1")


@pytest.mark.parametrize(
    ("model", "hint", "served", "expected"),
    [
        (M, None, (), "llama-3.1-8b"),
        ("llama-3.1-8b", "qwen2.5-7b", (), "llama-3.1-8b"),
        ("/models/store/llama", "meta-llama/Llama-3.1-70B-Instruct", (), "llama-3.1-70b"),
        ("/models/store/llama", "in-house", ("qwen2.5-7b",), "qwen2.5-7b"),
        ("/models/store/llama", "mistral-7b", ("qwen2.5-7b",), "mistral-7b"),
        (None, None, ("Qwen/Qwen2.5-7B-Instruct",), "qwen2.5-7b"),
        # A copy of the weights in a directory named after the model or its Hub id.
        ("/models/claim/llama-3.1-70b", "chat", (), "llama-3.1-70b"),
        ("/models/claim/Qwen/Qwen2.5-72B-Instruct/", "chat", (), "qwen2.5-72b"),
        ("s3://bucket/weights/mistral-7b", None, (), "mistral-7b"),
    ],
)
def test_catalog_model_from_model_hint_or_served_name(
    model: str | None, hint: str | None, served: tuple[str, ...], expected: str
) -> None:
    serve = VllmServe(model=model, served_model_names=served)
    assert vllmargs.catalog_model(serve, model_hint=hint) == expected


@pytest.mark.parametrize(
    ("model", "hint", "served"),
    [
        ("/models/store/x", "in-house", ("in-house-awq",)),
        ("s3://bucket/in-house-13b", None, ()),
        (None, None, ()),
    ],
)
def test_unknown_model_names_the_flag_and_the_tries(
    model: str | None, hint: str | None, served: tuple[str, ...]
) -> None:
    serve = VllmServe(model=model, served_model_names=served)
    with pytest.raises(vllmargs.VllmArgsError, match="--model") as info:
        vllmargs.sim_args(serve, gpu="H100-80GB", host="10.0.0.1", model_hint=hint)
    for tried in (model, hint, *served):
        assert tried is None or repr(tried) in str(info.value)


def test_sim_args_in_full() -> None:
    parsed = vllmargs.parse(
        image="vllm/vllm-openai:v0.11.0",
        command=[],
        args=["--model", M, "--served-model-name", "chat", "chat-2", "-tp", "2",
              "--max-model-len", "8192", "--max-num-seqs", "64", "--max-num-batched-tokens",
              "4096", "--gpu-memory-utilization", "0.85", "--dtype", "bfloat16",
              "--no-enable-prefix-caching", "--port", "9000", "--host", "0.0.0.0"],
    )  # fmt: skip
    assert parsed is not None
    args = vllmargs.sim_args(
        parsed, gpu="A100-80GB", host="10.1.2.3", speed=20, load_seconds=0, metrics_port=9400
    )
    assert args == [
        "--gpu", "A100-80GB", "--model", "llama-3.1-8b", "--served-model-name", "chat",
        "--tp", "2", "--dtype", "bf16", "--kv-cache-dtype", "auto", "--host", "10.1.2.3",
        "--port", "9000", "--speed", "20.0", "--max-model-len", "8192", "--max-num-seqs", "64",
        "--max-num-batched-tokens", "4096", "--gpu-memory-utilization", "0.85",
        "--load-seconds", "0", "--metrics-port", "9400", "--no-prefix-caching",
    ]  # fmt: skip


def test_sim_args_leave_defaults_to_the_simulator() -> None:
    args = vllmargs.sim_args(VllmServe(model=M), gpu="L4", host="10.0.0.9")
    assert args == [
        "--gpu", "L4", "--model", "llama-3.1-8b", "--served-model-name", M, "--tp", "1",
        "--dtype", "bf16", "--kv-cache-dtype", "auto", "--host", "10.0.0.9", "--port", "8000",
        "--speed", "1.0",
    ]  # fmt: skip


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def sim_settings(args: list[str]) -> Any:
    """What ``gpufleet sim`` builds from ``args``: its own parser and settings."""
    parser = argparse.ArgumentParser()
    command.add_replica_arguments(parser)
    command.add_fault_arguments(parser)
    return command.settings_from(parser.parse_args(args))


def _pools() -> list[tuple[str, ModelPoolSpec]]:
    return [
        (path.name, ModelPoolSpec.model_validate(doc["spec"]))
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc["kind"] == "ModelPool"
    ]


_VARIANTS = [
    pytest.param(spec, decision, id=f"{name}:{decision.name}")
    for name, spec in _pools()
    for decision in variants.plan_pool(spec)
    if decision.feasible
]


@pytest.mark.parametrize(("spec", "decision"), _VARIANTS)
def test_every_example_pool_round_trips(
    spec: ModelPoolSpec, decision: variants.VariantDecision
) -> None:
    pool = render.PoolRef(name="pool", namespace="ns", uid="uid")
    template = render.deployment(pool, spec, decision, replicas=1)["spec"]["template"]
    container, agent = template["spec"]["containers"]
    assert container["command"][:3] == ["gpufleet", "worker", "--"]
    assert (
        vllmargs.parse(image=agent["image"], command=agent["command"], args=agent["args"]) is None
    )
    parsed = vllmargs.parse(
        image=container["image"], command=container["command"], args=container["args"]
    )
    assert parsed is not None
    plan = decision.plan
    model, _ = podspec.model_location(spec.model.source)
    assert parsed.model == model
    assert parsed.served_model_names == (spec.model.name,)
    assert parsed.tensor_parallel_size == plan.tensor_parallel_size
    assert parsed.max_model_len == plan.max_model_len
    assert parsed.max_num_seqs == spec.serving.max_num_seqs
    assert parsed.gpu_memory_utilization == decision.variant.gpu_memory_utilization
    assert parsed.port == spec.serving.port
    assert parsed.enable_prefix_caching == (spec.serving.enable_prefix_caching or None)
    assert vllmargs.weight_dtype(parsed) == decision.dtype
    assert vllmargs.kv_cache_dtype(parsed) == spec.model.kv_cache_dtype
    hint = template["metadata"]["annotations"][contract.MODEL_ANNOTATION]
    if spec.model.catalog_name is None:
        with pytest.raises(vllmargs.VllmArgsError, match="--model"):
            vllmargs.sim_args(parsed, gpu=decision.gpu.name, host="10.0.0.1", model_hint=hint)
        return
    args = vllmargs.sim_args(parsed, gpu=decision.gpu.name, host="10.0.0.1", model_hint=hint)
    settings = sim_settings(args)
    assert settings.replica.arch.name == spec.model.catalog_name
    assert settings.replica.plan.tensor_parallel_size == plan.tensor_parallel_size
    assert settings.replica.plan.kv_cache_tokens == plan.kv_cache_tokens
    assert settings.served_model_name == spec.model.name
    # The simulated cold start stays inside the startup probe the operator gives the pod.
    assert 0 < settings.load_seconds < podspec.startup_budget_seconds(plan.weights_bytes)


def test_examples_cover_every_source_kind_and_precision() -> None:
    specs = [spec for _, spec in _pools()]
    assert {s.model.source.partition("://")[0] for s in specs} >= {"hf", "pvc"}
    assert {d.dtype for s in specs for d in variants.plan_pool(s)} >= {"bf16", "fp8", "awq"}
    assert len(_VARIANTS) >= 8


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ("hf://meta-llama/Llama-3.1-8B-Instruct@main", "meta-llama/Llama-3.1-8B-Instruct"),
        ("pvc://weights/llama-3.1-8b", "/models/weights/llama-3.1-8b"),
        ("s3://bucket/llama-3.1-8b", "s3://bucket/llama-3.1-8b"),
    ],
)
def test_every_weight_source_round_trips(source: str, model: str) -> None:
    spec = ModelPoolSpec.model_validate({
        "model": {"name": "chat", "source": source, "catalogName": "llama-3.1-8b",
                  "maxModelLen": 8192},
        "variants": [{"name": "h100", "gpu": "H100-80GB"}],
    })  # fmt: skip
    (decision,) = variants.plan_pool(spec)
    container = podspec.container(spec, decision)
    parsed = vllmargs.parse(
        image=container["image"], command=container["command"], args=container["args"]
    )
    assert parsed is not None and parsed.model == model
    args = vllmargs.sim_args(parsed, gpu="H100-80GB", host="10.0.0.1", model_hint="chat")
    assert value(args, "--model") == "llama-3.1-8b"
    assert value(args, "--served-model-name") == "chat"
