"""What every ``gpufleet`` command line shares: its help layout and its number types.

``HelpFormatter`` appends ``(default: …)`` to each option's help unless the help already
says its default or there is none to say (a flag that takes no value, None, an empty
string or list). The number types
reject a value outside their range with an ``argparse.ArgumentTypeError``, so argparse
exits 2 naming the flag: ``argument --gpus-per-node: must be at least 1, got 0``.
``format_all`` gives a parser and all its subcommands' parsers one formatter, since
argparse does not pass a parent's ``formatter_class`` on to its subparsers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's default-showing help, quiet about defaults that say nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.nargs == 0 or "default" in text.lower():
            return text
        if action.default in (None, "", [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser of its subcommands, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def format_all(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and all its subcommands' parsers ``HelpFormatter``."""
    for each in parsers(parser):
        each.formatter_class = HelpFormatter


def _number(kind: Callable[[str], float], text: str, what: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number not below ``minimum``."""

    def parse(text: str) -> int:
        value = int(_number(int, text, "a whole number"))
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = _number(float, text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of 0 or more."""
    value = _number(float, text, "a number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``."""

    def parse(text: str) -> float:
        value = _number(float, text, "a number")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def fraction(text: str) -> float:
    """An argparse type: a share above 0 and at most 1."""
    value = _number(float, text, "a number")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    value = _number(float, text, "a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free port where one is taken)."""
    value = int(_number(int, text, "a port number"))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text}")
    return value
