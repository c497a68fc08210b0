"""Asks real vLLM's own ``vllm serve`` argument parser; run by the vLLM environment's python.

Not a test module and never imported by gpufleet: it imports vLLM, which lives only in
the environment ``make test-vllm`` installs (``gpufleet.devcluster.vllmenv``). It reads
one JSON request from stdin and writes one JSON answer to stdout:

- ``{"flags": true}`` → ``{"version": …, "flags": {"--name": kind}, "short": …}``, kind being
  ``bool`` (takes no value; ``--no-…`` forms included), ``many`` (nargs ``+``/``*``),
  ``append`` (one value, repeatable) or ``one``, and ``"short": {"-tp": "--…"}``;
- ``{"parse": [[arg, …], …]}`` → ``{"results": [{"ok": …, "error": …, "values": …}]}``:
  each argument list as ``vllm serve ARGS`` parses and validates it (vLLM's
  ``validate_parsed_serve_args``), with the parsed namespace on success and argparse's
  message on refusal.

The parser is built exactly as the ``vllm`` command builds it: a
``FlexibleArgumentParser`` whose ``serve`` subparser ``ServeSubcommand`` fills through
``make_arg_parser``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any


def _serve_parser() -> tuple[Any, Any, Any]:
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(prog="vllm")
    subparsers = top.add_subparsers(dest="subparser", required=True)
    command = ServeSubcommand()
    return top, command, command.subparser_init(subparsers)


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "bool"
    if isinstance(action, argparse._AppendAction):
        return "append"
    if action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1):
        return "many"
    return "one"


def flags(serve: Any) -> dict[str, str]:
    return {
        option: _kind(action)
        for action in serve._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help",)
    }


def short_forms(serve: Any) -> dict[str, str]:
    """Each single-dash option (``-tp``) → its action's long option."""
    return {
        option: next(o for o in action.option_strings if o.startswith("--"))
        for action in serve._actions
        for option in action.option_strings
        if not option.startswith("--") and option != "-h"
    }


def _parse(top: Any, command: Any, argv: list[str]) -> dict[str, Any]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = top.parse_args(["serve", *argv])
            command.validate(args)
    except SystemExit:
        return {"ok": False, "error": err.getvalue().strip().splitlines()[-1:], "values": {}}
    except (ValueError, TypeError) as exc:
        return {"ok": False, "error": [str(exc)], "values": {}}
    values = {k: v for k, v in vars(args).items() if not callable(v)}
    return {"ok": True, "error": [], "values": json.loads(json.dumps(values, default=str))}


def main() -> int:
    import vllm

    request = json.load(sys.stdin)
    top, command, serve = _serve_parser()
    answer: dict[str, Any] = {"version": vllm.__version__}
    if request.get("flags"):
        answer["flags"] = flags(serve)
        answer["short"] = short_forms(serve)
    answer["results"] = [_parse(top, command, list(argv)) for argv in request.get("parse", [])]
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
