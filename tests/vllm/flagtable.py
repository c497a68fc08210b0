"""Writes ``gpufleet/devcluster/vllmflagtable.py`` from real vLLM's ``vllm serve`` parser.

The twin's argument parser (``devcluster.vllmargs``) must take each flag as vLLM does:
no value, one value, every value up to the next flag, or one value per repetition. It
cannot import vLLM, so it reads a table generated here from vLLM's own parser
(tests/vllm/probe.py); ``test_flag_table_is_vllms`` fails when the two differ, so a
flag vLLM adds, drops or changes is a failing test, not a silent misreading.

Regenerate after changing the supported vLLM version:
``GPUFLEET_VLLM_PYTHON=<the vLLM env's python> .venv/bin/python -m tests.vllm.flagtable``
(``make test-vllm`` prints that path).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gpufleet.devcluster import vllmflagtable

KINDS = (
    ("BOOLEAN", "bool", "take no value (store_true, or BooleanOptionalAction with --no-)"),
    ("MULTI", "many", 'take every value up to the next flag (nargs "+" or "*")'),
    ("APPEND", "append", "take one value and repeat (action append)"),
    ("SINGLE", "one", "take one value"),
)
HEADER = '''"""vLLM {version}'s ``vllm serve`` flags by how each takes its values (generated, pure).

Generated from vLLM's own parser by tests/vllm/flagtable.py; do not edit by hand. The
contract tests (``make test-vllm``) fail when real vLLM's parser no longer agrees.
``--no-…`` forms are listed where vLLM defines them.
"""

import types

VLLM_VERSION = "{version}"
'''


def render(version: str, flags: Mapping[str, str], short: Mapping[str, str]) -> str:
    """The module text for ``flags`` (``--name`` → kind) and ``short`` (``-tp`` → long)."""
    out = [HEADER.format(version=version)]
    pairs = "".join(f'        "{k}": "{short[k]}",\n' for k in sorted(short))
    out.append(
        "# Single-dash forms and the flag each stands for.\n"
        f"SHORT = types.MappingProxyType(\n    {{\n{pairs}    }}\n)\n"
    )
    for constant, kind, meaning in KINDS:
        names = sorted(name for name, k in flags.items() if k == kind)
        body = "".join(f'        "{name}",\n' for name in names)
        out.append(f"# Flags that {meaning}.\n{constant} = frozenset(\n    {{\n{body}    }}\n)\n")
    return "\n".join(out)


def module_path() -> Path:
    return Path(vllmflagtable.__file__)


def main() -> int:
    from tests.vllm import conftest

    answer = conftest.ask_vllm(Path(os.environ[conftest.PYTHON_ENV]), {"flags": True})
    module_path().write_text(render(answer["version"], answer["flags"], answer["short"]))
    print(f"wrote {module_path()} for vLLM {answer['version']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
