"""Every ``gpufleet`` command line in README.md and docs/*.md is one the real parser takes.

A line of a fenced block that starts with ``gpufleet`` (or ``$ gpufleet``,
``.venv/bin/gpufleet``) must parse in full: usage notation is read as written —
``[--name N]`` is tried with its option, ``[A | B]`` with A, ``...`` and ``…`` dropped —
and a trailing comment or pipe is cut. An inline ``gpufleet COMMAND …`` span may be a
fragment (``gpufleet plan --min-sequences``), so only its command, subcommands and every
option it names must exist.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shlex

import pytest

from gpufleet import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = {name for name, _, _ in cli.COMMANDS}
_START = re.compile(r"^(?:\$ )?(?:[\w./~-]*/)?(gpufleet [a-z].*)$")
_INLINE = re.compile(r"`(gpufleet [a-z][^`]*)`")


def _fenced(path: pathlib.Path) -> list[tuple[str, str]]:
    """(where, command line) of every fenced line that runs gpufleet, continuations joined."""
    found: list[tuple[str, str]] = []
    fenced = False
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = _START.match(line.strip()) if fenced else None
        if match and match.group(1).split()[1] in COMMANDS:
            text = match.group(1)
            for after in lines[number:]:
                if text.endswith("\\"):
                    text = text[:-1] + " " + after.strip()
                elif after.startswith(" ") and after.strip().startswith("["):
                    text += " " + after.strip()
                else:
                    break
            found.append((f"{path.name}:{number}", text))
    return found


def _inline(path: pathlib.Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    return [
        (f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}", m.group(1))
        for m in _INLINE.finditer(text)
        if m.group(1).split()[1].rstrip(":") in COMMANDS and not m.group(1).split()[1].endswith(":")
    ]


def argv(line: str) -> list[str]:
    """The words of a documented command line, usage notation resolved."""
    line = re.split(r"\s+#\s|\s\|\s", line.replace("\\|", "|"), maxsplit=1)[0]
    line = re.sub(r"\[([^\[\]|]*)\|[^\[\]]*\]", r"\1", line)  # [A | B] -> A
    line = line.replace("[", " ").replace("]", " ").replace("…", " ")
    return [w for w in shlex.split(line)[1:] if w != "..."]


def _parser_of(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)command parser ``words`` reach, and the words after its name."""
    parser, _ = cli.build_parser(every=True)
    rest = list(words)
    while rest:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or rest[0] not in subs[0].choices:
            break
        parser = subs[0].choices[rest.pop(0)]
    return parser, rest


FENCED = [case for path in DOCS for case in _fenced(path)]
INLINE = [case for path in DOCS for case in _inline(path)]


def test_the_docs_have_command_lines() -> None:
    assert len(FENCED) >= 10 and len(INLINE) >= 20


@pytest.mark.parametrize(("where", "line"), FENCED, ids=[w for w, _ in FENCED])
def test_a_fenced_command_line_parses(where: str, line: str) -> None:
    words = argv(line)
    parser, _ = cli.parser_for(words)
    try:
        args = parser.parse_args(words)
    except SystemExit:
        pytest.fail(f"{where}: `{line}` does not parse as {words}")
    assert args.command == words[0]


@pytest.mark.parametrize(("where", "line"), INLINE, ids=[w for w, _ in INLINE])
def test_an_inline_command_names_real_options(where: str, line: str) -> None:
    words = argv(line)
    parser, rest = _parser_of(words)
    tail = rest[: rest.index("--")] if "--" in rest else rest
    unknown = [w for w in tail if w.startswith("-") and w.split("=")[0]
               not in parser._option_string_actions]  # fmt: skip
    assert unknown == [], f"{where}: `{line}`: {parser.prog} has no {', '.join(unknown)}"
    positionals = [a for a in parser._actions if not a.option_strings]
    subcommands = [a for a in positionals if isinstance(a, argparse._SubParsersAction)]
    word = tail[0] if tail and not tail[0].startswith("-") else None
    if word is not None and (subcommands or not positionals):
        pytest.fail(f"{where}: `{line}`: {parser.prog} has no subcommand or argument {word!r}")
