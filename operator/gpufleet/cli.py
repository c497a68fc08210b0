"""The ``gpufleet`` command: one entry point whose subcommands live in their own modules.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; it is
imported only when chosen, so ``gpufleet --help`` stays fast and a subcommand's heavy
dependencies load only for it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from gpufleet import cliargs

DESCRIPTION = (
    "Run LLM model pools on Kubernetes clusters with several GPU generations and route "
    "each request by its expected compute cost."
)
EPILOG = "Run `gpufleet COMMAND --help` for a command's options."

# (name, module, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    (
        "dev-cluster",
        "gpufleet.devcluster.command",
        "build and run the local Kubernetes control plane",
    ),
    ("sim", "gpufleet.sim.command", "serve a simulated vLLM replica (or a fleet of them)"),
    ("bench", "gpufleet.loadgen.command", "generate load against an OpenAI-compatible URL"),
    ("plan", "gpufleet.planning.command", "plan a model on GPU generations: TP, weights, KV"),
    ("crds", "gpufleet.chart.command", "write the CRDs generated from the API models"),
    ("router", "gpufleet.router.command", "route OpenAI requests by expected compute cost"),
    ("operator", "gpufleet.controller.command", "run the ModelPool operator (Kopf)"),
    ("worker", "gpufleet.worker.command", "check this pod's GPUs, then exec vLLM"),
    ("gpu-agent", "gpufleet.gpuagent.command", "watch this pod's GPUs: DCGM metrics, /health"),
)


class _Version(argparse.Action):
    """``--version``: reads the package metadata only when asked (importing
    ``importlib.metadata`` costs every command ~30 ms of start-up)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser(
    chosen: str | None = None, *, every: bool = False
) -> tuple[argparse.ArgumentParser, dict[str, _Command]]:
    """The parser with the ``chosen`` command's options loaded (all with ``every``), and
    the loaded command modules by name."""
    parser = argparse.ArgumentParser(prog="gpufleet", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    loaded: dict[str, _Command] = {}
    for name, module, help_text in COMMANDS:
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if every or name == chosen:
            mod: _Command = importlib.import_module(module)
            mod.add_arguments(sub)
            loaded[name] = mod
    cliargs.format_all(parser)
    return parser, loaded


def parser_for(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, _Command]]:
    """``build_parser`` for the command ``argv`` names (its first word not an option)."""
    return build_parser(next((a for a in argv if not a.startswith("-")), None))


def version() -> str:
    """The installed package's version (its metadata), or "unknown" when not installed."""
    import importlib.metadata  # only for --version (see _Version)

    try:
        return importlib.metadata.version("gpufleet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, loaded = parser_for(args_list)
    args = parser.parse_args(args_list)
    return loaded[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
