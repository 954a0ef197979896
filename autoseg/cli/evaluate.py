"""``autoseg_evaluate`` and ``autoseg_find_best``: scoring predictions, choosing the model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from autoseg.cli.args import (
    OneLineParser,
    add_lesion_flags,
    dataset_name,
    lesion_outputs_from,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    format_number,
    parse_and_run,
)


def evaluate_parser() -> argparse.ArgumentParser:
    from autoseg.evaluation import CONVENTIONS

    parser = OneLineParser(
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
    parser.add_argument(
        "--lesion-tables",
        action="store_true",
        help="also write lesion tables of the predictions and of the references beside -o",
    )
    parser.add_argument(
        "--images", type=Path, help="images for the hemisphere's brain mask (default: beside -r)"
    )
    add_lesion_flags(parser)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from autoseg.pipeline.evaluate import evaluate

    summary = evaluate(
        args.reference,
        args.prediction,
        args.output,
        labels=args.labels,
        convention=args.convention,
        num_processes=args.num_processes,
        overwrite=args.overwrite,
        write_tables=args.lesion_tables,
        outputs=lesion_outputs_from(args, args.convention),
        images_dir=args.images,
    )
    mean = summary["mean"]
    headline = ", ".join(
        f"{name} {format_number(mean.get(key))}"
        for name, key in (("Dice", "dice"), ("HD95 mm", "hd95_mm"), ("lesion F1", "lesion_f1"))
    )
    print(f"{summary['num_cases']} cases: {headline} -> {args.output}")
    return EXIT_OK


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(evaluate_parser(), _evaluate, argv)


def find_best_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_find_best",
        description="Compare configurations and 2-configuration ensembles on cross-"
        "validation, choose postprocessing on CV, and record the winner in "
        "results/NAME/inference.json for autoseg_predict.",
    )
    parser.add_argument("dataset", help="trained dataset", type=dataset_name)
    parser.add_argument("-c", "--configurations", nargs="+", help="default: every trained one")
    parser.add_argument("--convention", choices=("isles22", "atlas"), default="isles22")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final")
    add_workspace_flags(parser)
    return parser


def _find_best(args: argparse.Namespace) -> int:
    from autoseg.pipeline.find_best import find_best, format_table

    payload = find_best(
        args.workspace,
        args.dataset,
        configurations=args.configurations,
        convention=args.convention,
        checkpoint=args.checkpoint,
    )
    print(format_table(payload))
    return EXIT_OK


def find_best_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(find_best_parser(), _find_best, argv)
