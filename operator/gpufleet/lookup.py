"""Names a person types, matched forgivingly against a catalog's canonical names. Pure.

``resolve`` tries, in order: the canonical name as written; any canonical name or alias
ignoring case; a canonical name that starts with what was typed followed by ``-`` (so
``h100`` finds ``H100-80GB`` while ``A100`` is ambiguous between ``A100-40GB`` and
``A100-80GB``). It raises ``Ambiguous`` naming the candidates, or ``NotFound`` with the
closest names (``difflib``) for a "did you mean" hint. Catalogs read by programs (labels,
custom resources) keep their exact lookups; this is for command lines and files people
write.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class LookupFailed(KeyError):
    """What was typed matched no single name; ``typed`` and ``candidates`` say more."""

    def __init__(self, typed: str, candidates: tuple[str, ...]) -> None:
        super().__init__(typed, candidates)
        self.typed = typed
        self.candidates = candidates


class NotFound(LookupFailed):
    """Nothing matched; ``candidates`` are the closest names, best first (maybe none)."""


class Ambiguous(LookupFailed):
    """Several canonical names matched; ``candidates`` are all of them."""


def resolve(typed: str, names: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """The canonical name ``typed`` means among ``names``; ``aliases`` maps other
    spellings to canonical names."""
    canonical = list(names)
    if typed in canonical:
        return typed
    folded = _folded(canonical, aliases or {})
    key = typed.strip().lower()
    if key in folded:
        return folded[key]
    prefixed = [n for n in canonical if n.lower().startswith(key + "-")] if key else []
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise Ambiguous(typed, tuple(prefixed))
    raise NotFound(typed, suggestions(typed, folded))


def suggestions(typed: str, spellings: Mapping[str, str], *, most: int = 3) -> tuple[str, ...]:
    """The canonical names of the spellings (lower case) that start with ``typed`` or
    are closest to it, at most ``most``."""
    key = typed.strip().lower()
    starting = [s for s in spellings if key and s.startswith(key)]
    close = difflib.get_close_matches(key, list(spellings), n=most * 2)
    return tuple(dict.fromkeys(spellings[c] for c in (*starting, *close)))[:most]


def did_you_mean(candidates: tuple[str, ...]) -> str:
    """``did you mean X?`` (or ``X or Y?``) for a message; empty without candidates."""
    if not candidates:
        return ""
    return f"did you mean {' or '.join(candidates)}? "


def _folded(names: list[str], aliases: Mapping[str, str]) -> dict[str, str]:
    folded = {alias.lower(): name for alias, name in aliases.items()}
    folded.update({name.lower(): name for name in names})
    return folded
