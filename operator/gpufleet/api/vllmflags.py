"""The vLLM flags a ModelPool's ``extraArgs`` may not set, read as vLLM's parser reads them.

Pure. vLLM's ``FlexibleArgumentParser`` (``vllm/utils/argparse_utils.py``) is Python's
``argparse`` with ``allow_abbrev`` left on, after a pass that turns ``_`` into ``-`` in a
``--flag`` name (up to the first ``.``) and ``--flag.key value`` into ``--flag
'{"key": value}'``; the serving flags also have short forms (``-tp``, ``-pp``, ``-dp``,
``-q``) and booleans a ``--no-`` negation. So ``--tensor_parallel_size=2``,
``--tensor-par 2``, ``-tp 2``, ``-qfp8`` and ``--served-model-name.x y`` all reach a flag
the operator sets. ``refused`` undoes every one of those spellings; ``PATTERN`` is the
regular expression the API server's CEL rule and its pydantic twin apply (all but the
abbreviations, which only ``refused`` can see: it knows the whole list).

Refused: what ``controller.podspec`` renders (the planner sized the pod for it), what
changes the GPUs a replica uses (pipeline and data parallelism), what the operator gates
(``--trust-remote-code``, ``--allowed-media-domains``: fields of ``spec.serving``), where
the server listens or writes (``--host``, ``--download-dir``), local files served to
clients (``--allowed-local-media-path``), and every hook that loads Python code or more
flags from a path or import name: a model repository's files land on the pod's disk, so
``--tool-parser-plugin /cache/…/x.py`` would run the repository's code without
``--trust-remote-code``, and ``--config /cache/…/x.yaml`` set any flag above.
"""

from __future__ import annotations

import re

REFUSED = (
    # rendered by controller.podspec
    "model", "served-model-name", "tensor-parallel-size", "max-model-len",
    "gpu-memory-utilization", "port", "max-num-seqs", "revision", "load-format", "dtype",
    "quantization", "kv-cache-dtype", "enable-prefix-caching", "allowed-media-domains",
    "trust-remote-code",
    # more GPUs per replica than the planner gave it
    "pipeline-parallel-size", "data-parallel-size", "data-parallel-size-local",
    # where the server listens, writes and reads
    "host", "download-dir", "allowed-local-media-path",
    # code or flags loaded from a path or an import name
    "config", "tool-parser-plugin", "reasoning-parser-plugin", "middleware", "worker-cls",
    "worker-extension-cls",
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


def _long_alternatives() -> str:
    return "|".join(name.replace("-", "[-_]") for name in REFUSED)


# A refused flag spelled in full (dashes or underscores, optional --no-, then the end, an
# =value or a .key), or a short form with anything after it, or a one-letter beginning
# of a short form (an abbreviation argparse would expand). RE2 (CEL) and Python agree on
# it, but for ``$``: Python's also matches before a final newline, so the twin uses \Z.
PATTERN = f"^--(no[-_])?({_long_alternatives()})([=.]|$)|^-(tp|pp|dp|q)|^-[tpd](=|$)"
_COMPILED = re.compile(PATTERN.replace("$", r"\Z"))


def matches_pattern(arg: str) -> bool:
    """The API server's verdict (the CEL rule's twin): True when ``arg`` is refused."""
    return _COMPILED.search(arg) is not None


def _long_name(arg: str) -> str:
    name = arg[2:].partition("=")[0].partition(".")[0].replace("_", "-")
    return name.removeprefix("no-")


def _refused_long(name: str) -> str | None:
    if name in REFUSED:
        return name
    if not name or name in NOT_ABBREVIATIONS:
        return None
    return next((flag for flag in REFUSED if flag.startswith(name)), None)


def _refused_short(name: str) -> str | None:
    for short, flag in SHORT.items():
        if name.startswith(short) or short.startswith(name):
            return flag
    return None


def refused(arg: str) -> str | None:
    """The refused flag ``arg`` would set, as ``--name``; None when vLLM may have it.

    A value (no leading ``-``) is never refused here: which flag it belongs to depends
    on the token before it, and the operator renders its own flags so that a stray value
    cannot attach to them (see ``controller.podspec.vllm_args``).
    """
    if arg.startswith("--"):
        flag = _refused_long(_long_name(arg))
    elif arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
        flag = _refused_short(arg[1:].partition("=")[0])
    else:
        flag = None
    return None if flag is None else "--" + flag
