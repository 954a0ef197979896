"""Command-line entry points: each parses its flags and calls one library function.

This is the only module that reads environment variables: it turns ``AUTOSEG_HOME``,
``AUTOSEG_RAW``, ``AUTOSEG_PREPROCESSED`` and ``AUTOSEG_RESULTS`` (or the matching flags)
into a :class:`~autoseg.data.workspace.Workspace`. Exit status: 0 success, 2 bad usage or
invalid input (reasons on stderr), 1 internal failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from autoseg.data.errors import InvalidInputError
from autoseg.data.workspace import DEFAULT_HOME, Workspace

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2


def workspace_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Workspace:
    """Flags win over environment variables, which win over ``$AUTOSEG_HOME/<root>``."""
    home = args.home or environ.get("AUTOSEG_HOME") or DEFAULT_HOME
    return Workspace.under(home).replace(
        raw=args.raw or environ.get("AUTOSEG_RAW"),
        preprocessed=args.preprocessed or environ.get("AUTOSEG_PREPROCESSED"),
        results=args.results or environ.get("AUTOSEG_RESULTS"),
    )


def add_workspace_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workspace (default: $AUTOSEG_HOME or ./autoseg_data)")
    group.add_argument("--home", help="root holding raw/, preprocessed/, results/")
    group.add_argument("--raw", help="raw datasets root (or $AUTOSEG_RAW)")
    group.add_argument("--preprocessed", help="plans and caches root (or $AUTOSEG_PREPROCESSED)")
    group.add_argument("--results", help="training results root (or $AUTOSEG_RESULTS)")


def run(command: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command, mapping errors to exit codes with readable messages on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return command(args) or EXIT_OK
    except InvalidInputError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


def _parse_and_run(
    parser: argparse.ArgumentParser,
    command: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    args = parser.parse_args(argv)
    if hasattr(args, "home"):
        args.workspace = workspace_from(args, os.environ)
    return run(command, args)


# --- autoseg_synth -----------------------------------------------------------------------


def synth_parser() -> argparse.ArgumentParser:
    from autoseg.data.synthetic import SYNTHETIC_KINDS

    parser = argparse.ArgumentParser(
        prog="autoseg_synth",
        description="Write synthetic stroke data in the layout of a real source (no downloads).",
    )
    parser.add_argument("kind", choices=SYNTHETIC_KINDS, help="kind of data to make")
    parser.add_argument("dest", type=Path, help="folder to write (created)")
    parser.add_argument("--cases", type=int, default=20, help="training cases (default 20)")
    parser.add_argument("--test-cases", type=int, default=0, help="unlabelled test cases")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size",
        default="small",
        choices=("tiny", "small", "full"),
        help="full: 1 mm (ATLAS 197x233x189); small: 2 mm, same field of view; tiny: tests",
    )
    parser.add_argument(
        "--layout",
        choices=("bids", "flat", "png", "npy", "mixed", "nifti"),
        help="atlas: bids (default) or flat; dwi: npy (default), mixed or nifti; ct-png: png",
    )
    parser.add_argument(
        "--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size in mm"
    )
    parser.add_argument(
        "--mask-scale", type=int, default=1, help="foreground value of masks (e.g. 255)"
    )
    return parser


def _synth(args: argparse.Namespace) -> int:
    from autoseg.data.synthetic import synthesize

    written = synthesize(
        args.kind,
        args.dest,
        cases=args.cases,
        seed=args.seed,
        size=args.size,
        layout=args.layout,
        test_cases=args.test_cases,
        spacing_mm=tuple(args.spacing) if args.spacing else None,
        mask_scale=args.mask_scale,
    )
    print(f"wrote {len(written)} files under {args.dest}")
    return EXIT_OK


def synth_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(synth_parser(), _synth, argv)


# --- autoseg_convert ---------------------------------------------------------------------


def convert_parser() -> argparse.ArgumentParser:
    from autoseg.data.convert import DEFAULT_SPACING_MM, list_kinds

    parser = argparse.ArgumentParser(
        prog="autoseg_convert",
        description="Convert a stroke dataset as users keep it into the raw layout "
        "(nnU-Net v2's) under raw/NAME. Per case, atomic and resumable.",
    )
    parser.add_argument("kind", choices=list_kinds(), help="the source's layout")
    parser.add_argument("src", type=Path, help="the source folder")
    parser.add_argument("-d", "--dataset", required=True, help="name of the raw dataset")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help=f"voxel size in mm for png-slices (default {list(DEFAULT_SPACING_MM)}) and npy "
        "arrays without a JSON sidecar",
    )
    parser.add_argument("--copy", action="store_true", help="nnunet: copy instead of link")
    parser.add_argument(
        "-np", "--num-processes", type=int, help="worker processes (default min(2, CPUs))"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo finished cases, remove stray files"
    )
    add_workspace_flags(parser)
    return parser


def _convert(args: argparse.Namespace) -> int:
    from autoseg.data.convert import convert

    summary = convert(
        args.kind,
        args.src,
        args.workspace.raw / args.dataset,
        spacing_mm=tuple(args.spacing) if args.spacing else None,
        copy=args.copy,
        num_processes=args.num_processes,
        overwrite=args.overwrite,
    )
    print("\n".join(summary.lines()))
    return EXIT_OK


def convert_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(convert_parser(), _convert, argv)


# --- autoseg_plan ------------------------------------------------------------------------


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoseg_plan",
        description="Verify a raw dataset, fingerprint it, write plans.json (patch, batch and "
        "network size fitted to the GPU memory, or to CPU time on a machine without one), "
        "splits.json, and the preprocessed caches.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset name (or nnU-Net id)")
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
    print(
        f"plans {plans.plans_id} ({plans.to_json()['gpu_memory_source']} budget) -> "
        f"{result.plans_path}"
    )
    for name, config in sorted(plans.configurations.items()):
        marker = "*" if name == plans.to_json()["recommended_configuration"] else " "
        print(
            f" {marker} {name:10s} patch {config['patch_size']} batch {config['batch_size']} "
            f"params {config['parameters'] / 1e6:.1f} M, memory {config['memory_estimate_gb']} GB"
        )
    for data_id, folder in result.cache_folders.items():
        print(f"   cache {data_id} -> {folder}")
    return EXIT_OK


def plan_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(plan_parser(), _plan, argv)


# --- autoseg_evaluate --------------------------------------------------------------------


def evaluate_parser() -> argparse.ArgumentParser:
    from autoseg.evaluation import CONVENTIONS

    parser = argparse.ArgumentParser(
        prog="autoseg_evaluate",
        description="Score a folder of predicted label maps against a folder of references: "
        "Dice, IoU, precision, sensitivity, specificity, HD95, ASSD, volume difference, "
        "lesion-wise F1 and lesion count difference, per case (CSV) and summarised (JSON).",
    )
    parser.add_argument("-r", "--reference", type=Path, required=True, help="reference labels")
    parser.add_argument("-p", "--prediction", type=Path, required=True, help="predicted labels")
    parser.add_argument("-o", "--output", type=Path, required=True, help="summary JSON to write")
    parser.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default="isles22",
        help="lesion rules: isles22 (26-connectivity, volume in ml) or atlas (6, voxels)",
    )
    parser.add_argument("--labels", type=int, nargs="+", help="labels to score (default: all)")
    parser.add_argument("-np", "--num-processes", type=int, help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from autoseg.evaluation import evaluate_folders

    summary = evaluate_folders(
        args.reference,
        args.prediction,
        args.output,
        labels=args.labels,
        convention=args.convention,
        num_processes=args.num_processes,
        overwrite=args.overwrite,
    )
    mean = summary["mean"]
    headline = ", ".join(
        f"{name} {_number(mean.get(key))}"
        for name, key in (("Dice", "dice"), ("HD95 mm", "hd95_mm"), ("lesion F1", "lesion_f1"))
    )
    print(f"{summary['num_cases']} cases: {headline} -> {args.output}")
    return EXIT_OK


def _number(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(evaluate_parser(), _evaluate, argv)


# --- autoseg_verify ----------------------------------------------------------------------


def verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoseg_verify",
        description="Check a raw dataset strictly and list every problem at once, one line "
        "each naming the file. Writes nothing. Exit 0 when valid, 2 when not.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset name (or nnU-Net id)")
    parser.add_argument(
        "-np", "--num-processes", type=int, help="worker processes (default: cores and RAM)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_workspace_flags(parser)
    return parser


def _verify(args: argparse.Namespace) -> int:
    from autoseg.data.layout import resolve_dataset_dir
    from autoseg.data.verify import format_report, verify_dataset

    root = resolve_dataset_dir(args.workspace.raw, args.dataset)
    report = verify_dataset(root, num_processes=args.num_processes, progress=not args.no_progress)
    # The reasons for a failure belong on stderr (exit 2), a clean report on stdout.
    print(format_report(report), file=sys.stdout if report.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_INVALID


def verify_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(verify_parser(), _verify, argv)
