"""``gpufleet plan``: where can a model run? One plan per GPU generation, as a table,
JSON or YAML, with the KV capacity at every feasible tensor-parallel size.

Model and GPU names are forgiving (``models.resolve``, ``catalog.resolve``: any case, a
Hugging Face id, ``H100`` for ``H100-80GB``); a model outside the catalog is described
by its architecture (``customarch``). Exit status: 0 when the model fits at least one
GPU asked for, 1 when it fits none (0 with ``--allow-infeasible``), 2 for an unknown
name, an invalid architecture or a bad catalog file, with one line naming it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import yaml

from gpufleet import cliargs, tables
from gpufleet.hardware import catalog, overrides
from gpufleet.planning import customarch, models, planner, precision, report

EXIT_NONE_FITS = 1
EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="catalog model name or Hugging Face id, any case"
    )
    parser.add_argument(
        "--dtype", default="bf16", choices=precision.WEIGHT_DTYPES, help="weight format"
    )
    parser.add_argument(
        "--kv-cache-dtype",
        default="auto",
        choices=precision.KV_CACHE_DTYPES,
        help="KV-cache precision",
    )
    parser.add_argument(
        "--max-model-len",
        type=cliargs.positive_int,
        help="longest sequence (default: the model's context)",
    )
    parser.add_argument(
        "--gpu",
        action="append",
        metavar="G",
        help="GPU generation, e.g. H100 or h100-80gb; repeatable (default: all)",
    )
    parser.add_argument(
        "--gpus-per-node",
        type=cliargs.positive_int,
        help="GPUs per node (default: the catalog's, 8)",
    )
    parser.add_argument(
        "--tensor-parallel-size",
        type=cliargs.positive_int,
        help="validate this TP instead of choosing one",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=cliargs.fraction,
        default=planner.DEFAULT_GPU_MEMORY_UTILIZATION,
        help="share of GPU memory vLLM may use for weights, KV cache and runtime",
    )
    parser.add_argument(
        "--min-sequences",
        type=cliargs.positive_int,
        default=planner.DEFAULT_MIN_SEQUENCES,
        help="full-length sequences the KV cache must hold (default: 1, vLLM's own check)",
    )
    parser.add_argument("--catalog", type=pathlib.Path, help="GPU catalog overrides (YAML)")
    parser.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format"
    )
    parser.add_argument(
        "--allow-infeasible",
        action="store_true",
        help="exit 0 even when the model fits none of the GPUs asked for",
    )
    customarch.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        gpus = overrides.load_catalog(args.catalog)
        model = customarch.from_args(args) or models.resolve(args.model)
        chosen = [catalog.resolve(name, gpus) for name in args.gpu or gpus]
        plans = [_plan(args, model, gpu) for gpu in chosen]
        options = {gpu.name: _options(args, model, gpu) for gpu in chosen}
    except (models.UnknownModel, catalog.UnknownGpu, overrides.CatalogError, ValueError) as exc:
        print(f"gpufleet plan: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.output == "table":
        _show(plans, options)
    else:
        print(render(plans, options, args.output))
    if any(p.feasible for p in plans) or args.allow_infeasible:
        return 0
    print(f"gpufleet plan: {model.name} fits none of the GPUs asked for", file=sys.stderr)
    return EXIT_NONE_FITS


def render(
    plans: list[planner.VariantPlan],
    options: dict[str, tuple[planner.VariantPlan, ...]],
    output: str,
) -> str:
    """The plans in the ``output`` format (json or yaml; a table is ``_show``'s)."""
    documents = [report.as_json(p, options[p.gpu]) for p in plans]
    if output == "json":
        return json.dumps(documents, indent=2)
    return yaml.safe_dump(documents, sort_keys=False).rstrip()


def _show(
    plans: list[planner.VariantPlan], options: dict[str, tuple[planner.VariantPlan, ...]]
) -> None:
    """The table for people: drawn on a terminal, plain lines into a pipe (``tables``)."""
    heading, rows, notes = report.sections(plans, options)
    print(heading + "\n", flush=True)
    tables.show(rows, stream=sys.stdout)
    if notes:
        print("\n".join(notes))


def _settings(args: argparse.Namespace) -> planner.Settings:
    return {
        "dtype": args.dtype,
        "kv_cache_dtype": args.kv_cache_dtype,
        "max_model_len": args.max_model_len,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "gpus_per_node": args.gpus_per_node,
        "min_sequences": args.min_sequences,
    }


def _options(
    args: argparse.Namespace, model: models.ModelArch, gpu: catalog.GpuSpec
) -> tuple[planner.VariantPlan, ...]:
    if args.tensor_parallel_size is not None:
        return ()
    return planner.feasible_sizes(model, gpu, **_settings(args))


def _plan(
    args: argparse.Namespace, model: models.ModelArch, gpu: catalog.GpuSpec
) -> planner.VariantPlan:
    return planner.plan_variant(
        model, gpu, tensor_parallel_size=args.tensor_parallel_size, **_settings(args)
    )
