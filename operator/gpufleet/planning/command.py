"""``gpufleet plan``: where can a model run? One plan per GPU generation, table or JSON.

Unknown model or GPU names print one line listing the known names and exit 2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from gpufleet.hardware import catalog, overrides
from gpufleet.planning import models, planner, precision, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="catalog model name (or Hugging Face id)")
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
        "--max-model-len", type=int, help="longest sequence (default: the model's context)"
    )
    parser.add_argument(
        "--gpu", action="append", metavar="G", help="GPU generation; repeatable (default: all)"
    )
    parser.add_argument(
        "--gpus-per-node", type=int, help="GPUs per node (default: the catalog's, 8)"
    )
    parser.add_argument(
        "--tensor-parallel-size", type=int, help="validate this TP instead of choosing one"
    )
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=planner.DEFAULT_GPU_MEMORY_UTILIZATION
    )
    parser.add_argument(
        "--min-sequences",
        type=int,
        default=planner.DEFAULT_MIN_SEQUENCES,
        help="full-length sequences the KV cache must hold (default: 1, vLLM's own check)",
    )
    parser.add_argument("--catalog", type=pathlib.Path, help="GPU catalog overrides (YAML)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    try:
        gpus = overrides.load_catalog(args.catalog)
        model = models.get(args.model)
        chosen = [catalog.get(name, gpus) for name in args.gpu or gpus]
        plans = [_plan(args, model, gpu) for gpu in chosen]
    except (models.UnknownModel, catalog.UnknownGpu, overrides.CatalogError, ValueError) as exc:
        print(f"gpufleet plan: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps([report.as_json(p) for p in plans], indent=2))
    else:
        print(report.table(plans))
    return 0


def _plan(
    args: argparse.Namespace, model: models.ModelArch, gpu: catalog.GpuSpec
) -> planner.VariantPlan:
    return planner.plan_variant(
        model,
        gpu,
        dtype=args.dtype,
        kv_cache_dtype=args.kv_cache_dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        gpus_per_node=args.gpus_per_node,
        min_sequences=args.min_sequences,
    )
