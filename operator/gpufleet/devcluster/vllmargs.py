"""A container's command and arguments → the ``gpufleet sim`` that stands in for it (pure).

The twin's pod runner asks ``parse`` whether a container runs vLLM's OpenAI server, and
with which settings, then ``sim_args`` for the simulator flags. A container runs vLLM
when its command and args together (either may hold everything) are

- ``vllm serve [MODEL] [flags]`` (any path to ``vllm``),
- ``python[3[.N]] [-u …] -m vllm.entrypoints.openai.api_server [flags]``, or
- either of those after ``gpufleet worker [--check-only] --`` (the worker image's
  entrypoint, which checks the GPUs and then execs them; bare flags after ``--`` mean
  ``vllm serve`` flags, as the worker reads them),

or when it has no command and its image is vLLM's OpenAI image (repository
``…/vllm-openai``) or gpufleet's worker image (``…/gpufleet-worker``), any registry, tag
or digest: that image's entrypoint is the server (``gpufleet worker --`` for the
worker), so ``args`` are its flags. The twin runs no GPU check: the simulator stands in
for what the worker execs. A shell (``sh -c "vllm serve …"``) is not looked into: its
variables are the shell's to expand.

Flags are read as vLLM's ``FlexibleArgumentParser`` reads them: ``--flag value``,
``--flag=value``, underscores for dashes (``--max_model_len``), the short forms (``-tp``,
``-q`` …), list flags (``--served-model-name``, ``--allowed-media-domains``, ``--api-key``
…) taking every value up to the next flag, ``--middleware`` one value per repetition,
booleans with a ``--no-`` negation (``--no-enable-prefix-caching``) and integers with
human-readable suffixes (``32k``, ``1K``). Which flag takes what comes from the supported
vLLM's own parser (``devcluster.vllmflagtable``, generated and checked against vLLM by the
contract tests): a ``--flag`` vLLM does not define is refused as ``vllm serve`` refuses
it, so a pod the real server would crash-loop on fails in the twin too. Errors are
``VllmArgsError`` naming the flag and what is accepted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from gpufleet.devcluster import vllmflagtable
from gpufleet.planning import models

VLLM_IMAGE = "vllm-openai"
WORKER_IMAGE = "gpufleet-worker"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# vLLM's --port default (vllm/entrypoints/openai/cli_args.py).
DEFAULT_PORT = 8000

# How each flag takes its values, read from the supported vLLM's own parser
# (devcluster.vllmflagtable, generated; the contract tests keep it equal to vLLM's).
_SHORT = vllmflagtable.SHORT
_BOOLEAN = vllmflagtable.BOOLEAN
_MULTI = vllmflagtable.MULTI
_APPEND = vllmflagtable.APPEND
_KNOWN = _BOOLEAN | _MULTI | _APPEND | vllmflagtable.SINGLE
_NEGATIVE_NUMBER = re.compile(r"^-\d")
# vLLM's human_readable_int (vllm/utils/argparse_utils.py, v0.30.0): k/m/g/t decimal
# (decimals allowed), K/M/G/T binary (whole numbers only); ``1Ki`` is refused.
_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)([kmgtKMGT])?")
_MULTIPLIER = {
    **{s: 1000**i for i, s in enumerate("kmgt", 1)},
    **{s: 1024**i for i, s in enumerate("KMGT", 1)},
}

# vLLM's --quantization methods → the simulator's weight dtype (gpufleet.planning.precision).
# Methods whose width depends on the checkpoint (compressed-tensors, modelopt,
# bitsandbytes, gguf) are not simulated.
_QUANTIZATION = {
    "fp8": "fp8", "fbgemm_fp8": "fp8", "ptpc_fp8": "fp8",
    "awq": "awq", "awq_marlin": "awq",
    "gptq": "gptq", "gptq_marlin": "gptq",
    "experts_int8": "int8",
}  # fmt: skip
# vLLM's --dtype (ModelDType) → weight dtype; ``auto`` is the checkpoint's torch_dtype,
# bfloat16 for every model of the catalog. 32-bit weights are not simulated.
_DTYPE = {"auto": "bf16", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
# vLLM's --kv-cache-dtype (CacheDType) → the simulator's KV-cache dtype.
_KV_CACHE_DTYPE = {
    "auto": "auto", "bfloat16": "bf16",
    "fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "fp8_inc": "fp8", "fp8_ds_mla": "fp8",
}  # fmt: skip


class VllmArgsError(ValueError):
    """A vLLM container whose arguments cannot be simulated; the message names the flag."""


@dataclasses.dataclass(frozen=True, slots=True)
class VllmServe:
    """The serving settings of one vLLM container, in vLLM's own terms.

    ``None`` means the flag was not given (vLLM's default applies): ``model`` None is
    vLLM's default model, ``max_model_len`` None the model's context, and
    ``enable_prefix_caching`` None vLLM's default (on). ``dtype``, ``quantization`` and
    ``kv_cache_dtype`` are vLLM's spellings; ``sim_args`` maps them.
    """

    model: str | None
    served_model_names: tuple[str, ...] = ()
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    enable_prefix_caching: bool | None = None
    host: str | None = None
    port: int = DEFAULT_PORT


def parse(*, image: str, command: Sequence[str], args: Sequence[str]) -> VllmServe | None:
    """The vLLM settings of a container, or None when it does not run vLLM's server.

    ``command`` and ``args`` are the PodSpec's, after ``$(VAR)`` expansion. Raises
    ``VllmArgsError`` naming the flag whose value vLLM would reject (a non-integer
    ``--port``, say).
    """
    argv = server_argv(image=image, command=command, args=args)
    if argv is None:
        return None
    positionals, flags = _scan(argv)
    model = _model(positionals, flags)
    quantization = _last(flags, "--quantization")
    return VllmServe(
        model=model,
        served_model_names=flags.get("--served-model-name", ()),
        tensor_parallel_size=_int(flags, "--tensor-parallel-size") or 1,
        max_model_len=_int(flags, "--max-model-len"),
        max_num_seqs=_int(flags, "--max-num-seqs"),
        max_num_batched_tokens=_int(flags, "--max-num-batched-tokens"),
        gpu_memory_utilization=_float(flags, "--gpu-memory-utilization"),
        dtype=_last(flags, "--dtype") or "auto",
        quantization=None if quantization in (None, "", "None") else quantization,
        kv_cache_dtype=_last(flags, "--kv-cache-dtype") or "auto",
        enable_prefix_caching=_bool(flags, "--enable-prefix-caching"),
        host=_last(flags, "--host"),
        port=_int(flags, "--port") or DEFAULT_PORT,
    )


def _model(positionals: Sequence[str], flags: Mapping[str, tuple[str, ...]]) -> str | None:
    """The one model: vLLM reads ``--model X`` as the positional ``X`` and refuses two."""
    given = [*positionals, *(flags.get("--model", ())[-1:])]
    if len(given) > 1:
        raise VllmArgsError(
            f"--model: one model only, positional or --model; got {', '.join(given)}"
        )
    return given[0] if given else None


def server_argv(*, image: str, command: Sequence[str], args: Sequence[str]) -> list[str] | None:
    """The vLLM server's own arguments (after ``vllm serve`` or the module), or None."""
    if not command:
        if _repository(image) == WORKER_IMAGE:
            return _after_worker(["--", *args])
        after = _after_launcher(args)
        if after is None and is_vllm_image(image):
            return list(args)
        return after
    return _after_launcher([*command, *args])


def _repository(image: str) -> str:
    return image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


def is_vllm_image(image: str) -> bool:
    """True for vLLM's OpenAI image under any registry, tag or digest."""
    return _repository(image) == VLLM_IMAGE


def _after_worker(argv: Sequence[str]) -> list[str] | None:
    """What ``gpufleet worker ARGV`` execs, as vLLM's arguments (``worker.command``)."""
    rest = list(argv)
    while rest and rest[0] == "--check-only":
        rest = rest[1:]
    if rest[:1] != ["--"]:
        return None
    rest = rest[1:]
    if not rest or rest[0].startswith("-"):
        return rest  # bare flags: the worker puts `vllm serve` in front
    return _after_launcher(rest)


def _after_launcher(argv: Sequence[str]) -> list[str] | None:
    if not argv:
        return None
    program = argv[0].rsplit("/", 1)[-1]
    if program == "gpufleet" and argv[1:2] == ["worker"]:
        return _after_worker(argv[2:])
    if program == "vllm":
        return list(argv[2:]) if argv[1:2] == ["serve"] else None
    if re.fullmatch(r"python(3(\.\d+)?)?", program) and "-m" in argv:
        at = list(argv).index("-m")
        interpreter_flags = all(a.startswith("-") for a in argv[1:at])
        if interpreter_flags and argv[at + 1 : at + 2] == [API_SERVER_MODULE]:
            return list(argv[at + 2 :])
    return None


def _scan(argv: Sequence[str]) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Positionals in order, and each flag's values (the last occurrence wins, but a
    repeatable flag such as ``--middleware`` collects one value per occurrence).

    A boolean flag's value is ``("true",)``, or ``("false",)`` for its ``--no-`` form.
    """
    positionals: list[str] = []
    flags: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(argv):
        token, i = argv[i], i + 1
        if not _is_flag(token):
            positionals.append(token)
            continue
        name, has_inline, inline = token.partition("=")
        name = _known(_canonical(name))
        if has_inline and name in _BOOLEAN:
            raise VllmArgsError(f"{name} takes no value (got {inline!r}); vLLM refuses it")
        if name.startswith("--no-"):
            flags["--" + name.removeprefix("--no-")] = ("false",)
        elif has_inline:
            flags[name] = (inline,)
        elif name in _BOOLEAN:
            flags[name] = ("true",)
        elif name in _APPEND:
            values, i = _values(argv, i, many=False)
            flags[name] = (*flags.get(name, ()), *values)
        else:
            flags[name], i = _values(argv, i, many=name in _MULTI)
    return positionals, flags


def _known(name: str) -> str:
    """The vLLM flag ``name`` stands for; refused, as ``vllm serve`` refuses it, if none.

    vLLM's parser is argparse with abbreviations allowed: a unique beginning of a flag
    (``--tensor-par``) is that flag. A dotted flag (``--compilation-config.mode``) sets
    one key of a JSON-valued flag and is vLLM's to judge; single-dash forms other than
    the known short ones are let through.
    """
    if not name.startswith("--") or "." in name or name in _KNOWN:
        return name
    candidates = sorted(flag for flag in _KNOWN if flag.startswith(name))
    if len(candidates) == 1:
        return candidates[0]
    version = vllmflagtable.VLLM_VERSION
    if candidates:
        raise VllmArgsError(f"{name}: ambiguous in vLLM {version}: {', '.join(candidates[:5])}")
    raise VllmArgsError(f"{name}: vLLM {version} has no such flag (vllm serve refuses it)")


def _values(argv: Sequence[str], i: int, *, many: bool) -> tuple[tuple[str, ...], int]:
    """The values of a flag whose name ended at ``argv[i - 1]``, and the next index."""
    end = i
    while end < len(argv) and not _is_flag(argv[end]) and (many or end == i):
        end += 1
    return tuple(argv[i:end]), end


def _is_flag(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token)


def _canonical(name: str) -> str:
    if name.startswith("--"):
        return "--" + name[2:].replace("_", "-")
    return _SHORT.get(name, name)


def _last(flags: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    values = flags.get(name)
    if values is None:
        return None
    if not values:
        raise VllmArgsError(f"{name} needs a value")
    return values[-1]


def _int(flags: Mapping[str, tuple[str, ...]], name: str) -> int | None:
    text = _last(flags, name)
    if text is None or text in ("auto", "-1", "None"):
        return None
    match = _HUMAN_INT.fullmatch(text.strip())
    if match is None or ("." in match[1] and match[2] not in tuple("kmgt")):
        raise VllmArgsError(f"{name} {text!r}: expected an integer such as 4096 or 32k")
    value = float(match[1]) * _MULTIPLIER.get(match[2] or "", 1)
    return int(value)


def _float(flags: Mapping[str, tuple[str, ...]], name: str) -> float | None:
    text = _last(flags, name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise VllmArgsError(f"{name} {text!r}: expected a number such as 0.9") from None


def _bool(flags: Mapping[str, tuple[str, ...]], name: str) -> bool | None:
    text = _last(flags, name)
    return None if text is None else text.lower() not in ("false", "0", "no")


def sim_args(
    serve: VllmServe,
    *,
    gpu: str,
    host: str,
    model_hint: str | None = None,
    speed: float = 1.0,
    load_seconds: float | None = None,
    metrics_port: int | None = None,
) -> list[str]:
    """The arguments after ``gpufleet sim`` that simulate ``serve`` on ``gpu`` at ``host``.

    ``--model`` is the first of the container's ``--model`` (or its path's tail),
    ``model_hint`` (the pod's ``gpufleet.io/model`` annotation) and its first served
    name that the simulator's model catalog knows (``catalog_model``);
    ``--served-model-name`` is the first served name, else the ``--model`` value.
    ``load_seconds`` None leaves the simulator to compute the model load. Raises
    ``VllmArgsError`` naming the flag the simulator cannot follow (a model it does not
    know, a 32-bit ``--dtype``, an unsupported ``--quantization``).
    """
    model = catalog_model(serve, model_hint=model_hint)
    served = (*serve.served_model_names, serve.model, model)[0] or model
    out = [
        "--gpu", gpu,
        "--model", model,
        "--served-model-name", served,
        "--tp", str(serve.tensor_parallel_size),
        "--dtype", weight_dtype(serve),
        "--kv-cache-dtype", kv_cache_dtype(serve),
        "--host", host,
        "--port", str(serve.port),
        "--speed", str(float(speed)),
    ]  # fmt: skip
    optional = {
        "--max-model-len": serve.max_model_len,
        "--max-num-seqs": serve.max_num_seqs,
        "--max-num-batched-tokens": serve.max_num_batched_tokens,
        "--gpu-memory-utilization": serve.gpu_memory_utilization,
        "--load-seconds": load_seconds,
        "--metrics-port": metrics_port,
    }
    out += [item for flag, v in optional.items() if v is not None for item in (flag, str(v))]
    if serve.enable_prefix_caching is False:
        out.append("--no-prefix-caching")
    return out


def catalog_model(serve: VllmServe, *, model_hint: str | None = None) -> str:
    """The catalog name of the model ``serve`` runs; ``VllmArgsError`` when none is known.

    Tried in order: the ``--model`` value, its last two and last path elements (a local
    or object-store copy is usually a directory named after the model or its Hugging Face
    id: ``/models/claim/meta-llama/Llama-3.1-8B-Instruct``), ``model_hint``, the first
    served name.
    """
    candidates = (*_with_tails(serve.model), model_hint, *serve.served_model_names[:1])
    for candidate in candidates:
        if candidate:
            try:
                return models.get(candidate).name
            except models.UnknownModel:
                continue
    tried = ", ".join(repr(c) for c in candidates if c) or "none given"
    raise VllmArgsError(
        f"--model {serve.model!r}: no model the simulator knows (tried {tried}); "
        f"known: {', '.join(models.MODELS)} or their Hugging Face ids"
    )


def _with_tails(model: str | None) -> tuple[str, ...]:
    if not model:
        return ()
    parts = model.rstrip("/").split("/")
    return tuple(dict.fromkeys((model, "/".join(parts[-2:]), parts[-1])))


def weight_dtype(serve: VllmServe) -> str:
    """The simulator's weight dtype: from ``--quantization`` when set, else ``--dtype``."""
    if serve.quantization is not None:
        return _mapped(_QUANTIZATION, serve.quantization, "--quantization")
    return _mapped(_DTYPE, serve.dtype, "--dtype")


def kv_cache_dtype(serve: VllmServe) -> str:
    return _mapped(_KV_CACHE_DTYPE, serve.kv_cache_dtype, "--kv-cache-dtype")


def _mapped(table: Mapping[str, str], value: str, flag: str) -> str:
    try:
        return table[value]
    except KeyError:
        accepted = ", ".join(table)
        raise VllmArgsError(f"{flag} {value!r} is not simulated; accepted: {accepted}") from None
