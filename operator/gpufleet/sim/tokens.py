"""Synthetic tokenization and text (pure, deterministic across processes).

There is no real tokenizer here; prompt token counts come from a consistent estimate:
words split into pieces of up to four letters, digits in groups of three, and every
other non-space character one token — close to what BPE tokenizers give English text
(about 4 characters per token). Each piece has a stable id (CRC-32 of its text), so equal
prompt prefixes give equal KV block hashes in every process, which the prefix cache and
prefix-affinity routing rely on.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

_PIECE = re.compile(r" ?[A-Za-z]{1,4}| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+")

# Words of the synthetic completions; one word is one token.
_WORDS = (
    "the", "model", "token", "batch", "cache", "queue", "route", "pool", "load", "time",
    "data", "step", "page", "node", "flow", "rate", "cost", "unit", "path", "core",
)  # fmt: skip


def token_ids(text: str) -> list[int]:
    """Stable ids of ``text``'s estimated tokens."""
    return [zlib.crc32(piece.encode()) for piece in _PIECE.findall(text)]


def count(text: str) -> int:
    """Estimated token count of ``text``."""
    return len(_PIECE.findall(text))


def block_hashes(ids: Sequence[int], block_size: int) -> tuple[int, ...]:
    """Chained hashes of the full blocks of ``ids``, as vLLM's prefix cache keys them."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(ids) - block_size + 1, block_size):
        previous = hash((previous, *ids[start : start + block_size]))
        hashes.append(previous)
    return tuple(hashes)


def word(index: int) -> str:
    """The ``index``-th synthetic output token, with its leading space."""
    return " " + _WORDS[index % len(_WORDS)]


def render_chat(messages: Sequence[tuple[str, str]]) -> str:
    """A chat rendered as one prompt, in the shape of Llama 3's template.

    The markers make each message cost a few tokens beyond its content, as real chat
    templates do, and keep a shared system prompt a shared prefix.
    """
    parts = ["<|begin_of_text|>"]
    for role, content in messages:
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)
