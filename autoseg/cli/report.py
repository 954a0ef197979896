"""``autoseg_report`` and ``autoseg_visualize``: the HTML report and single-case overlays."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from autoseg.cli.args import (
    OneLineParser,
    dataset_name,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    parse_and_run,
)


def report_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_report",
        description="Write one self-contained HTML report of a dataset (no network, no "
        "external files): fingerprint, plans, training curves, cross-validation, test "
        "metrics and per-case overlays worst-first with missed and false-positive lesions.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset name", type=dataset_name)
    parser.add_argument("-o", "--output", type=Path, help="default results/NAME/report.html")
    parser.add_argument("--metrics", type=Path, help="default results/NAME/test/metrics.json")
    parser.add_argument("--images", type=Path, help="default raw/NAME/imagesTs or imagesTr")
    parser.add_argument("--predictions", type=Path, help="default results/NAME/test/predictions")
    parser.add_argument("--references", type=Path, help="default raw/NAME/labelsTs or labelsTr")
    parser.add_argument("--max-cases", type=int, default=20, help="overlays of the N worst cases")
    add_workspace_flags(parser)
    return parser


def _report(args: argparse.Namespace) -> int:
    from autoseg.reporting.report import write_report

    path = write_report(
        args.workspace,
        args.dataset,
        output_path=args.output,
        metrics_path=args.metrics,
        images_dir=args.images,
        predictions_dir=args.predictions,
        references_dir=args.references,
        max_cases=args.max_cases,
    )
    print(f"report: {path}")
    return EXIT_OK


def report_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(report_parser(), _report, argv)


def visualize_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_visualize",
        description="Draw one case: axial slices through the largest lesion with the "
        "reference outline (green) and the prediction outline (red), as a PNG.",
    )
    parser.add_argument("image", type=Path, help="image (first channel file)")
    parser.add_argument("prediction", type=Path, help="predicted label map")
    parser.add_argument("--ref", type=Path, help="reference label map")
    parser.add_argument("--uncertainty", type=Path, help="<case>_uncertainty volume")
    parser.add_argument("--slice", type=int, help="axial (z) index; default: through the lesion")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    return parser


def _visualize(args: argparse.Namespace) -> int:
    from autoseg.reporting.overlay import draw_overlay

    path = draw_overlay(
        args.image,
        args.prediction,
        args.output,
        reference_path=args.ref,
        slice_index=args.slice,
        uncertainty_path=args.uncertainty,
    )
    print(f"overlay: {path}")
    return EXIT_OK


def visualize_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(visualize_parser(), _visualize, argv)
