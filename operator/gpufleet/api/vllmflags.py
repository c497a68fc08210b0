"""The vLLM flags a ModelPool's ``extraArgs`` may set, read as vLLM's parser reads them.

Pure. ``extraArgs`` is an allow-list: ``TUNING`` names the flags that change how fast and
how much a replica serves inside the pod the planner sized, and nothing else. Every
other flag is refused; for the flags a pool author reaches for, ``REFUSED`` keeps the
reason (the message names it), any other gets "not a tuning flag".

vLLM's ``FlexibleArgumentParser`` (``vllm/utils/argparse_utils.py``) is Python's
``argparse`` with ``allow_abbrev`` left on, after a pass that turns ``_`` into ``-`` in a
``--flag`` name (up to the first ``.``) and ``--flag.key value`` into ``--flag
'{"key": value}'``; the serving flags also have short forms (``-tp``, ``-pp``, ``-dp``,
``-q``) and booleans a ``--no-`` negation. So ``--tensor_parallel_size=2``,
``--tensor-par 2``, ``-tp 2``, ``-qfp8`` and ``--served-model-name.x y`` all reach a flag
the operator sets. An allowed flag must be spelled in full (``_`` or ``-``, ``=value``,
``.key``, ``--no-``): an abbreviation is refused, and ``refused`` undoes every spelling
to name the refused flag it would reach. ``RULE`` is the API server's CEL rule, and
``allowed`` its twin: what one admits the other does.

Refused with a reason: what ``controller.modelpool.podspec`` renders (the planner sized the pod for
it), what changes the GPUs a replica uses (pipeline and data parallelism), what the
operator gates (``--trust-remote-code``, ``--allowed-media-domains``: fields of
``spec.serving``), where the server listens or writes (``--host``, ``--download-dir``),
local files served to clients (``--allowed-local-media-path``), what sends prompts or
their tokens out of the pod (KV events, KV transfer, traces, request logs), and every
hook that loads Python code or more flags from a path or import name: a model
repository's files land on the pod's disk, so ``--tool-parser-plugin /cache/…/x.py``
would run the repository's code without ``--trust-remote-code``, and ``--config
/cache/…/x.yaml`` set any flag above.
"""

from __future__ import annotations

import re

_OWNED = "which the operator sets or gates"
_GPUS = "which gives a replica more GPUs than the planner did"
_FILES = "which points the server at the pod's own addresses or files"
_OUT = "which sends prompts, their tokens or their KV cache out of the pod"
_CODE = "which loads code or more flags from a path or an import name"
# Refused flags a pool author reaches for → why (the message says it).
REFUSED: dict[str, str] = {
    # rendered by controller.modelpool.podspec
    **dict.fromkeys((
        "model", "served-model-name", "tensor-parallel-size", "max-model-len",
        "gpu-memory-utilization", "port", "max-num-seqs", "revision", "load-format", "dtype",
        "quantization", "kv-cache-dtype", "enable-prefix-caching", "allowed-media-domains",
        "trust-remote-code",
    ), _OWNED),
    **dict.fromkeys(
        ("pipeline-parallel-size", "data-parallel-size", "data-parallel-size-local"), _GPUS
    ),
    **dict.fromkeys(("host", "download-dir", "allowed-local-media-path"), _FILES),
    **dict.fromkeys((
        "kv-events-config", "kv-transfer-config", "otlp-traces-endpoint",
        "enable-log-requests",
    ), _OUT),
    **dict.fromkeys((
        "config", "tool-parser-plugin", "reasoning-parser-plugin", "middleware", "worker-cls",
        "worker-extension-cls", "scheduler-cls", "logits-processors",
        # its JSON's inductor_passes name functions to import by qualified name
        "compilation-config",
    ), _CODE),
}  # fmt: skip
# The flags extraArgs may set (vLLM's EngineArgs and serve arguments, docs.vllm.ai
# "Engine Arguments" and "vllm serve"): batching and scheduling, the compilation level
# (-O0..-O3, not --compilation-config) and CUDA graphs, caching inside the pod's own
# memory, speculative decoding, and how the API parses tool calls, reasoning and
# multi-modal prompts. None names a host, a file or a Python import, and none changes
# the GPUs or memory the planner sized.
TUNING = (
    # batching and scheduling
    "max-num-batched-tokens", "enable-chunked-prefill", "max-num-partial-prefills",
    "max-long-partial-prefills", "long-prefill-token-threshold", "scheduling-policy",
    "async-scheduling", "stream-interval",
    # execution
    "enforce-eager", "cuda-graph-sizes", "max-seq-len-to-capture",
    "disable-custom-all-reduce", "disable-cascade-attn", "enable-expert-parallel",
    "block-size", "swap-space", "cpu-offload-gb", "speculative-config", "model-impl",
    "config-format", "tokenizer-mode", "tokenizer-revision", "seed", "max-logprobs",
    "override-generation-config",
    # the OpenAI server
    "tool-call-parser", "enable-auto-tool-choice", "reasoning-parser",
    "chat-template-content-format", "response-role", "return-tokens-as-token-ids",
    "enable-request-id-headers", "enable-force-include-usage",
    "enable-prompt-tokens-details", "enable-server-load-tracking", "disable-log-stats",
    "disable-uvicorn-access-log", "uvicorn-log-level", "max-log-len",
    "disable-fastapi-docs", "limit-mm-per-prompt", "mm-processor-kwargs",
    "mm-processor-cache-gb",
)  # fmt: skip
# vLLM's short forms (EngineArgs.add_cli_args) → their long flag.
SHORT = {
    "tp": "tensor-parallel-size",
    "pp": "pipeline-parallel-size",
    "dp": "data-parallel-size",
    "q": "quantization",
}
# Real vLLM flags that are also the beginning of a refused one: argparse takes an exact
# name before any abbreviation, so these are not abbreviations of the refused flag.
NOT_ABBREVIATIONS = frozenset({"reasoning-parser"})


# A value (argparse reads a negative number as one) or vLLM's optimisation level -O0..-O3.
# RE2 (CEL) and Python agree on it, but for ``$``: Python's also matches before a final
# newline, so the twin uses \Z.
VALUE_PATTERN = r"^-([0-9]*[.]?[0-9]+|O[0-3])$"
_VALUE = re.compile(VALUE_PATTERN.replace("$", r"\Z"))
_FLAGS = frozenset("--" + name for name in TUNING)
# The API server's rule: a value, or a flag whose name — before any =value or .key, with
# _ read as - and --no- as -- — is a tuning flag. A list lookup rather than one regular
# expression of every name: that one's estimated cost was over the CRD's budget.
RULE = (
    "self.extraArgs.all(a, !a.startsWith('-') || a.matches('" + VALUE_PATTERN + "') || "
    "a.split('=')[0].split('.')[0].replace('_', '-').replace('--no-', '--') in ["
    + ", ".join(f"'{flag}'" for flag in sorted(_FLAGS))
    + "])"
)


def allowed(arg: str) -> bool:
    """Whether ``arg`` may be in ``extraArgs`` (``RULE``'s twin, step for step)."""
    if not arg.startswith("-") or _VALUE.search(arg):
        return True
    name = arg.split("=")[0].split(".")[0].replace("_", "-").replace("--no-", "--")
    return name in _FLAGS


def _long_name(arg: str) -> str:
    name = arg[2:].partition("=")[0].partition(".")[0].replace("_", "-")
    return name.removeprefix("no-")


def _refused_long(name: str) -> str | None:
    if name in REFUSED:
        return name
    if not name or name in NOT_ABBREVIATIONS or name in TUNING:
        return None
    return next((flag for flag in REFUSED if flag.startswith(name)), None)


def _refused_short(name: str) -> str | None:
    for short, flag in SHORT.items():
        if name.startswith(short) or short.startswith(name):
            return flag
    return None


def refused(arg: str) -> str | None:
    """The refused flag of ``REFUSED`` that ``arg`` would set, as ``--name``; None when
    it reaches none of them (``allowed`` still decides whether vLLM may have it).

    A value (no leading ``-``) is never refused here: which flag it belongs to depends
    on the token before it, and the operator renders its own flags so that a stray value
    cannot attach to them (see ``controller.modelpool.podspec.vllm_args``).
    """
    if arg.startswith("--"):
        flag = _refused_long(_long_name(arg))
    elif arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
        flag = _refused_short(arg[1:].partition("=")[0])
    else:
        flag = None
    return None if flag is None else "--" + flag


def problem(arg: str) -> str | None:
    """Why ``arg`` may not be in ``extraArgs`` (completes "<arg> …"); None when it may."""
    if allowed(arg):
        return None
    flag = refused(arg)
    if flag is not None:
        return f"sets vLLM's {flag}, {REFUSED[flag[2:]]}"
    return (
        "is not one of the tuning flags extraArgs may set, spelled in full "
        "(docs/operator.md#trust-boundary lists them)"
    )
