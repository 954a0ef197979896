"""``autoseg_synth``, ``autoseg_convert``, ``autoseg_verify``: making and checking raw datasets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from autoseg.cli.args import (
    OneLineParser,
    dataset_name,
)
from autoseg.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    add_workspace_flags,
    parse_and_run,
)


def synth_parser() -> argparse.ArgumentParser:
    from autoseg.synthetic.generate import SYNTHETIC_KINDS

    parser = OneLineParser(
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
    parser.add_argument(
        "--skull-stripped", action="store_true", help="atlas: the brain alone, zero around it"
    )
    parser.add_argument(
        "--png-bits", type=int, choices=(8, 16), default=8,
        help="ct-png: 8 (brain window, default) or 16 (pseudo-HU: HU + 1024)",
    )  # fmt: skip
    return parser


def _synth(args: argparse.Namespace) -> int:
    from autoseg.synthetic.generate import synthesize

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
        skull_stripped=args.skull_stripped,
        png_bits=args.png_bits,
    )
    print(f"wrote {len(written)} files under {args.dest}")
    return EXIT_OK


def synth_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(synth_parser(), _synth, argv)


def convert_parser() -> argparse.ArgumentParser:
    from autoseg.data.convert import DEFAULT_SPACING_MM, list_kinds

    parser = OneLineParser(
        prog="autoseg_convert",
        description="Convert a stroke dataset as users keep it into the raw layout "
        "(nnU-Net v2's) under raw/NAME. Per case, atomic and resumable.",
    )
    parser.add_argument("kind", choices=list_kinds(), help="the source's layout")
    parser.add_argument("src", type=Path, help="the source folder")
    parser.add_argument(
        "-d", "--dataset", required=True, help="name of the raw dataset", type=dataset_name
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help=f"voxel size in mm for png-slices (default {list(DEFAULT_SPACING_MM)}) and npy "
        "arrays without a JSON sidecar",
    )
    parser.add_argument(
        "--channels",
        nargs="+",
        metavar="CHANNEL",
        help="isles22: channels in this order, of dwi, adc, flair (default dwi adc); "
        "FLAIR is resampled onto the DWI grid",
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
        channels=args.channels,
    )
    print("\n".join(summary.lines()))
    return EXIT_OK


def convert_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(convert_parser(), _convert, argv)


def verify_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_verify",
        description="Check a raw dataset strictly and list every problem at once, one line "
        "each naming the file. Writes nothing. Exit 0 when valid, 2 when not.",
    )
    parser.add_argument(
        "-d", "--dataset", required=True, help="dataset name (or nnU-Net id)", type=dataset_name
    )
    parser.add_argument(
        "-np", "--num-processes", type=int, help="worker processes (default: cores and RAM)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_workspace_flags(parser)
    return parser


def _verify(args: argparse.Namespace) -> int:
    from autoseg.core.run_layout import resolve_dataset_dir
    from autoseg.data.verify import format_report, verify_dataset

    root = resolve_dataset_dir(args.workspace.raw, args.dataset)
    report = verify_dataset(root, num_processes=args.num_processes, progress=not args.no_progress)
    # The reasons for a failure belong on stderr (exit 2), a clean report on stdout.
    print(format_report(report), file=sys.stdout if report.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_INVALID


def verify_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(verify_parser(), _verify, argv)
