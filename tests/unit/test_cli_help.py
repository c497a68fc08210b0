"""The ``gpufleet`` command line reads like a tool's: every option explained with its
default, a version, and numbers out of range refused naming their flag."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from gpufleet import cli, cliargs


def _options() -> list[tuple[str, argparse.Action]]:
    parser, _ = cli.build_parser(every=True)
    return [
        (each.prog, action)
        for each in cliargs.parsers(parser)
        for action in each._actions
        if action.option_strings and action.help != argparse.SUPPRESS
    ]


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"{prog} {action.option_strings[0]}" for prog, action in _options()
               if not action.help]  # fmt: skip
    assert missing == []


def test_defaults_are_shown_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["bench", "trace", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "random seed of the trace (default: 0)" in out
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("(default: the model's context)") == 1


def test_no_help_shows_a_default_that_says_nothing() -> None:
    # A flag that takes no value (--no-prometheus: "default: True" read as "on"), None,
    # an empty string or list: nothing to say.
    parser, _ = cli.build_parser(every=True)
    for each in cliargs.parsers(parser):
        text = " ".join(each.format_help().split())
        for empty in ("(default: None)", "(default: False)", "(default: True)", "(default: )",
                      "(default: [])"):  # fmt: skip
            assert empty not in text, (each.prog, empty)


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "``" not in out and "--version" in out
    assert "gpu-agent" in out and "plan a model" in out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == (f"gpufleet {importlib.metadata.version('gpufleet')}")


def test_sim_usage_names_what_a_replica_requires(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["sim", "--help"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "usage: gpufleet sim --gpu GPU --model MODEL [options]"


def test_bench_trace_mentions_no_flag_it_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["bench", "trace", "--help"])
    assert "--trace" not in capsys.readouterr().out.replace("--trace FILE`", "")


_PLAN = ["plan", "--model", "llama-3.1-8b"]
_LOAD = ["bench", "load", "--target", "http://127.0.0.1:9", "--model", "m"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        ([*_PLAN, "--gpus-per-node", "0"], "--gpus-per-node"),
        ([*_PLAN, "--tensor-parallel-size", "-2"], "--tensor-parallel-size"),
        ([*_PLAN, "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        ([*_PLAN, "--max-model-len", "many"], "--max-model-len"),
        (["sim", "--gpu", "L4", "--model", "llama-3.1-8b", "--tp", "0"], "--tp"),
        # The fault model's bounds, refused by argparse rather than in a pydantic dump.
        (["sim", "--gpu", "L4", "--model", "llama-3.1-8b", "--slowdown", "0.5"], "--slowdown"),
        (["sim", "--gpu", "L4", "--model", "llama-3.1-8b", "--hang", "5000"], "--hang"),
        ([*_LOAD, "--concurrency", "0"], "--concurrency"),
        (["bench", "trace", "--out", "t.json", "--batch-share", "2"], "--batch-share"),
        (["router", "--config", "c.yaml", "--port", "70000"], "--port"),
        (["dev-cluster", "up", "--sim-speed", "0"], "--sim-speed"),
        (["gpu-agent", "--interval", "0"], "--interval"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_are_refused_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
