"""``autoseg_plan``: verify, fingerprint, plan and preprocess a raw dataset."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from autoseg.cli.args import (
    OneLineParser,
    dataset_name,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    parse_and_run,
)


def plan_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_plan",
        description="Verify a raw dataset, fingerprint it, write plans.json (patch, batch and "
        "network size fitted to the GPU memory, or to CPU time on a machine without one), "
        "splits.json, and the preprocessed caches.",
    )
    parser.add_argument(
        "-d", "--dataset", required=True, help="dataset name (or nnU-Net id)", type=dataset_name
    )
    parser.add_argument(
        "--gpu-memory-gb", type=float, help="plan for a card of this size (default: detected)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "mps"), help="plan for this device (default: detected)"
    )
    parser.add_argument("--plan-only", action="store_true", help="stop after plans.json")
    parser.add_argument(
        "-c", "--configurations", nargs="+", default=[], help="preprocess only these"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a plans value, e.g. 3d_hybrid.batch_size=4 (recorded in the plans)",
    )
    parser.add_argument("-np", "--num-processes", type=int, help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="rebuild finished caches")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_workspace_flags(parser)
    return parser


def _plan(args: argparse.Namespace) -> int:
    from autoseg.pipeline.plan import PlanOptions, run_plan

    options = PlanOptions(
        gpu_memory_gb=args.gpu_memory_gb,
        device=args.device,
        overrides=tuple(args.overrides),
        plan_only=args.plan_only,
        configurations=tuple(args.configurations),
        num_processes=args.num_processes,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    result = run_plan(args.workspace, args.dataset, options)
    plans = result.plans
    print(f"plans {plans.plans_id} ({plans.gpu_memory_source} budget) -> {result.plans_path}")
    if (plans.cpu_budget or {}).get("bf16"):
        print("   bf16 faster than float32 on this CPU: planned for bf16 training "
              "(3d_hybrid one width level wider); train on a CPU like this one")  # fmt: skip
    for name, config in sorted(plans.configurations.items()):
        marker = "*" if name == plans.recommended_configuration else " "
        spacing = "x".join(f"{s:g}" for s in config.spacing_mm)
        print(
            f" {marker} {name:10s} patch {list(config.patch_size)} at {spacing} mm, batch "
            f"{config.batch_size}, params {config.parameters / 1e6:.1f} M, "
            f"memory {config.memory_estimate_gb} GB"
        )
    for data_id, folder in result.cache_folders.items():
        print(f"   cache {data_id} -> {folder}")
    return EXIT_OK


def plan_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(plan_parser(), _plan, argv)
