"""The operator's trust boundary (table-driven): what a ModelPool author may not reach.

Extra vLLM arguments beyond the tuning flags, in every spelling vLLM's parser accepts,
images outside the operator's allowed prefixes or older than the first vLLM release
whose media host check holds, model code the operator does not allow, and media hosts
inside the cluster, the host or link-local space.
"""

from __future__ import annotations

import argparse
from typing import Any

import pydantic
import pytest

from gpufleet.api import mediahosts, vllmflags, vllmrelease
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.api.variant import Variant
from gpufleet.controller import command, images
from gpufleet.controller.modelpool import podspec, variants
from gpufleet.operatorconfig import OperatorConfig

MODEL = {"name": "m", "source": "hf://org/repo", "catalogName": "llama-3.1-8b"}


def pool(*, serving: dict[str, Any] | None = None, extra: list[str] | None = None) -> ModelPoolSpec:
    variant: dict[str, Any] = {"name": "a", "gpu": "H100-80GB"}
    if extra is not None:
        variant["extraArgs"] = extra
    return ModelPoolSpec.model_validate(
        {"model": MODEL, "variants": [variant], "serving": serving or {}}
    )


def variant_with(extra: list[str]) -> Variant:
    """A variant built without validation: what reaches the operator when the API server
    holds an older CRD, or an abbreviation no CEL rule can see."""
    return Variant.model_construct(name="a", gpu="H100-80GB", extra_args=tuple(extra))


# Every spelling vLLM's FlexibleArgumentParser (argparse, allow_abbrev on) reads as a flag
# the operator sets or gates: the flag it reaches.
REFUSED = [
    ("--tensor-parallel-size=8", "--tensor-parallel-size"),
    ("--tensor_parallel_size", "--tensor-parallel-size"),
    ("--tensor_parallel-size=8", "--tensor-parallel-size"),
    ("-tp", "--tensor-parallel-size"),
    ("-tp=8", "--tensor-parallel-size"),
    ("-t", "--tensor-parallel-size"),
    ("-q", "--quantization"),
    ("-qfp8", "--quantization"),
    ("-pp", "--pipeline-parallel-size"),
    ("-dp", "--data-parallel-size"),
    ("-dpl", "--data-parallel-size"),
    ("--model=other/model", "--model"),
    ("--served-model-name", "--served-model-name"),
    ("--served-model-name.x", "--served-model-name"),
    ("--served_model_name=alias", "--served-model-name"),
    ("--port=9000", "--port"),
    ("--host", "--host"),
    ("--max-model-len=1000000", "--max-model-len"),
    ("--max_model_len", "--max-model-len"),
    ("--gpu-memory-utilization", "--gpu-memory-utilization"),
    ("--dtype=float32", "--dtype"),
    ("--kv-cache-dtype", "--kv-cache-dtype"),
    ("--no-enable-prefix-caching", "--enable-prefix-caching"),
    ("--trust-remote-code", "--trust-remote-code"),
    ("--trust_remote_code", "--trust-remote-code"),
    ("--allowed-media-domains", "--allowed-media-domains"),
    ("--allowed-local-media-path=/", "--allowed-local-media-path"),
    ("--download-dir", "--download-dir"),
    ("--config", "--config"),
    ("--config=/cache/huggingface/x.yaml", "--config"),
    ("--tool-parser-plugin", "--tool-parser-plugin"),
    ("--middleware", "--middleware"),
    ("--worker_extension_cls", "--worker-extension-cls"),
]
# Abbreviations: argparse expands a unique beginning of a long flag. Only the operator
# sees these (it knows the whole list); the API server's pattern does not.
ABBREVIATED = [
    ("--tensor-par", "--tensor-parallel-size"),
    ("--tensor-par=8", "--tensor-parallel-size"),
    ("--trust-remote", "--trust-remote-code"),
    ("--trust_rem", "--trust-remote-code"),
    ("--gpu-mem=0.99", "--gpu-memory-utilization"),
    ("--allowed-med", "--allowed-media-domains"),
    ("--no-enable-prefix", "--enable-prefix-caching"),
]
# Flags outside the tuning list that the issue found passing the old deny-list, with the
# reason each now gets.
UNTUNING = [
    ("--kv-events-config={}", "--kv-events-config", "out of the pod"),
    ("--kv_transfer_config", "--kv-transfer-config", "out of the pod"),
    ("--otlp-traces-endpoint=http://x", "--otlp-traces-endpoint", "out of the pod"),
    ("--enable-log-requests", "--enable-log-requests", "out of the pod"),
    ("--scheduler-cls=m.S", "--scheduler-cls", "import name"),
    ("--logits-processors", "--logits-processors", "import name"),
    ("--compilation-config.level", "--compilation-config", "import name"),
]
ALLOWED = [
    "--enforce-eager",
    "--max-num-batched-tokens=4096",  # documented: overrides workloadClass
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
    "--reasoning-parser",  # a flag of its own, not an abbreviation of the plugin flag
    "--tool-call-parser",
    "--model-impl",
    "--config-format",
    "--tokenizer-revision",
    "-O3",
    "--speculative-config",
    "8192",
    "-1",
]


@pytest.mark.parametrize(("arg", "flag"), REFUSED + ABBREVIATED)
def test_refused_reads_each_spelling_as_vllm_does(arg: str, flag: str) -> None:
    assert vllmflags.refused(arg) == flag


@pytest.mark.parametrize(("arg", "flag"), REFUSED + ABBREVIATED)
def test_the_api_servers_pattern_refuses_every_spelling(arg: str, flag: str) -> None:
    assert not vllmflags.allowed(arg)
    assert flag in str(vllmflags.problem(arg))


@pytest.mark.parametrize(("arg", "flag", "why"), UNTUNING)
def test_flags_outside_the_tuning_list_are_refused_with_their_reason(
    arg: str, flag: str, why: str
) -> None:
    assert not vllmflags.allowed(arg)
    assert vllmflags.problem(arg) == f"sets vLLM's {flag}, {vllmflags.REFUSED[flag[2:]]}"
    assert why in vllmflags.REFUSED[flag[2:]]


@pytest.mark.parametrize("arg", ["--foo", "--enforce", "--tokenizer=other/repo", "-x"])
def test_any_other_flag_is_not_a_tuning_flag(arg: str) -> None:
    assert not vllmflags.allowed(arg)
    assert "not one of the tuning flags" in str(vllmflags.problem(arg))


@pytest.mark.parametrize("arg", ALLOWED)
def test_tuning_flags_and_values_pass(arg: str) -> None:
    assert vllmflags.refused(arg) is None
    assert vllmflags.allowed(arg)
    assert vllmflags.problem(arg) is None


def test_pattern_is_anchored_like_re2() -> None:
    # Python's $ also matches before a final newline, RE2's (the API server's) does not;
    # vLLM reads "--enforce-eager\n" as an unknown flag.
    assert not vllmflags.allowed("--enforce-eager\n")
    assert vllmflags.allowed("--enforce-eager")


@pytest.mark.parametrize(
    "extra",
    [["--tensor_parallel_size", "8"], ["-tp", "8"], ["--trust-remote-code"], ["value", "-x"]],
)
def test_the_api_refuses_the_obvious_spellings(extra: list[str]) -> None:
    with pytest.raises(pydantic.ValidationError, match="extraArgs"):
        pool(extra=extra)


@pytest.mark.parametrize(
    ("extra", "index", "flag"),
    [
        (["--enforce-eager", "--tensor-par", "8"], 1, "--tensor-parallel-size"),
        (["--trust-rem"], 0, "--trust-remote-code"),
        (["--allowed-med", "169.254.169.254"], 0, "--allowed-media-domains"),
        (["--enforce-eager", "--kv-events-config", "{}"], 1, "--kv-events-config"),
    ],
)
def test_operator_names_the_extra_arg_at_fault(extra: list[str], index: int, flag: str) -> None:
    (problem,) = variants.extra_arg_problems(variant_with(extra))
    assert problem.startswith(f"spec.variants[a].extraArgs[{index}] ")
    assert flag in problem


def test_operator_refuses_a_value_first() -> None:
    (problem,) = variants.extra_arg_problems(variant_with(["169.254.169.254", "--enforce-eager"]))
    assert problem.startswith("spec.variants[a].extraArgs[0] ")


def test_trust_remote_code_needs_the_operators_consent() -> None:
    asks = pool(serving={"trustRemoteCode": True})
    (problem,) = variants.spec_problems("p", asks, config=OperatorConfig())
    assert problem.startswith("spec.serving.trustRemoteCode")
    allowed = OperatorConfig(allow_trust_remote_code=True)
    assert variants.spec_problems("p", asks, config=allowed) == ()
    args = podspec.vllm_args(asks, variants.plan_pool(asks)[0])
    assert "--trust-remote-code" in args
    plain = pool()
    assert "--trust-remote-code" not in podspec.vllm_args(plain, variants.plan_pool(plain)[0])


@pytest.mark.parametrize(
    ("image", "prefixes", "ok"),
    [
        ("vllm/vllm-openai:v0.14.1", OperatorConfig().allowed_image_prefixes, True),
        ("docker.io/vllm/vllm-openai@sha256:ab12", OperatorConfig().allowed_image_prefixes, True),
        ("index.docker.io/vllm/vllm-openai", OperatorConfig().allowed_image_prefixes, True),
        ("ghcr.io/gpufleet/vllm:1", OperatorConfig().allowed_image_prefixes, True),
        ("vllm/vllm-openai-evil:1", OperatorConfig().allowed_image_prefixes, False),
        ("ghcr.io/gpufleet-evil/vllm:1", OperatorConfig().allowed_image_prefixes, False),
        ("evil.io/vllm/vllm-openai:v0.14.1", OperatorConfig().allowed_image_prefixes, False),
        ("ubuntu", ("docker.io/library/ubuntu",), True),
        ("registry.local:5000/ai/vllm:1", ("registry.local:5000/ai/",), True),
        ("registry.local:5000/ai2/vllm:1", ("registry.local:5000/ai",), False),
        ("anything/at:all", ("*",), True),
        ("vllm/vllm-openai:v0.14.1", (), False),
    ],
)
def test_image_prefixes(image: str, prefixes: tuple[str, ...], ok: bool) -> None:
    assert images.allowed(image, prefixes) is ok


def test_image_outside_the_prefixes_is_named() -> None:
    outside = pool(serving={"image": "evil.io/miner:1"})
    (problem,) = variants.spec_problems("p", outside, config=OperatorConfig())
    assert problem.startswith("spec.serving.image 'evil.io/miner:1'")
    assert variants.spec_problems("p", pool(), config=OperatorConfig()) == ()


def test_media_urls_are_fetched_from_no_host_unless_the_pool_lists_some() -> None:
    plain = pool()
    args = podspec.vllm_args(plain, variants.plan_pool(plain)[0])
    at = args.index("--allowed-media-domains")
    assert args[at + 1 : at + 3] == [podspec.NO_MEDIA_DOMAIN, "--served-model-name"]
    listed = pool(serving={"allowedMediaDomains": ["upload.wikimedia.org", "example.com"]})
    args = podspec.vllm_args(listed, variants.plan_pool(listed)[0])
    at = args.index("--allowed-media-domains")
    assert args[at + 1 : at + 4] == ["upload.wikimedia.org", "example.com", "--served-model-name"]
    env = {e["name"]: e.get("value") for e in podspec.env(plain, 1)}
    assert env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("169.254.169.254", "IP address"),
        ("127.1", "IP address"),
        ("0x7f.1", "IP address"),
        ("2130706433", "IP address"),
        ("localhost", "loopback"),
        ("app.localhost", "loopback"),
        ("kubernetes", "single label"),
        ("prometheus.monitoring.svc", "Service"),
        ("prometheus.monitoring.svc.cluster.local", "Service"),
        ("x.cluster.local", ".local"),
        ("metadata.google.internal", ".internal"),
        ("1.0.0.127.in-addr.arpa", ".arpa"),
    ],
)
def test_media_domains_outside_public_dns_are_refused(host: str, why: str) -> None:
    assert why in str(mediahosts.problem(host))
    with pytest.raises(pydantic.ValidationError, match=r"allowedMediaDomains\[1\]"):
        pool(serving={"allowedMediaDomains": ["example.com", host]})


@pytest.mark.parametrize("host", ["upload.wikimedia.org", "example.com", "svc.example.com"])
def test_public_media_domains_pass(host: str) -> None:
    assert mediahosts.problem(host) is None
    pool(serving={"allowedMediaDomains": [host]})


def test_media_domains_are_host_names() -> None:
    with pytest.raises(pydantic.ValidationError, match="allowedMediaDomains"):
        pool(serving={"allowedMediaDomains": ["http://169.254.169.254/"]})


@pytest.mark.parametrize(
    ("image", "old"),
    [
        ("vllm/vllm-openai:v0.14.0", True),
        ("vllm/vllm-openai:v0.11.0", True),
        ("vllm/vllm-openai:0.9.2", True),
        ("vllm/vllm-openai:v0.13", True),
        ("vllm/vllm-openai:v0.13.0-cu128", True),
        ("vllm/vllm-openai:v0.14.1rc1", True),
        ("docker.io/vllm/vllm-openai:v0.12.0", True),
        ("registry.corp:5000/vllm/vllm-openai:v0.10.1", True),  # a mirror: the same image
        ("vllm/vllm-openai:v0.14.1", False),
        ("vllm/vllm-openai:v0.14.10", False),
        ("vllm/vllm-openai:v0.15.0", False),
        ("vllm/vllm-openai:v1.0.0", False),
        ("vllm/vllm-openai:latest", False),
        ("vllm/vllm-openai@sha256:ab12", False),
        ("vllm/vllm-openai-cpu:v0.9.0", False),
        (podspec.DEFAULT_AGENT_IMAGE, False),
    ],
)
def test_vllm_releases_before_the_media_fix_are_refused(image: str, old: bool) -> None:
    assert vllmrelease.too_old(image) is old
    if old:
        with pytest.raises(pydantic.ValidationError, match="CVE-2026-24779"):
            pool(serving={"image": image})


def test_settings_from_flags_and_environment() -> None:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(
        ["--allowed-image-prefix", "r.io/a/", "--allowed-image-prefix", "*",
         "--allow-trust-remote-code"]
    )  # fmt: skip
    config = command.config_from(args)
    assert config.allowed_image_prefixes == ("r.io/a/", "*")
    assert config.allow_trust_remote_code is True
    defaults = command.config_from(parser.parse_args([]))
    assert defaults.allowed_image_prefixes == OperatorConfig().allowed_image_prefixes
    assert defaults.allow_trust_remote_code is False
    env = {
        "GPUFLEET_OPERATOR_ALLOWED_IMAGE_PREFIXES": "r.io/a/, r.io/b",
        "GPUFLEET_OPERATOR_ALLOW_TRUST_REMOTE_CODE": "false",
    }
    from_env = OperatorConfig.from_env(env)
    assert from_env.allowed_image_prefixes == ("r.io/a/", "r.io/b")
    assert from_env.allow_trust_remote_code is False
    with pytest.raises(ValueError, match="ALLOW_TRUST_REMOTE_CODE"):
        OperatorConfig.from_env({"GPUFLEET_OPERATOR_ALLOW_TRUST_REMOTE_CODE": "maybe"})
