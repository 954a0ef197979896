"""Argument types, shared flags and the parser class of the command line (:mod:`autoseg.cli`).

Bad usage is one line and exit status 2, never a traceback: an out-of-range number or a
dataset name that is not one folder name is refused while the flags are parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import dataset_name_problem

if TYPE_CHECKING:  # imported where used: parsing flags must not wait for torch
    from autoseg.pipeline.lesion_outputs import LesionOutputs
    from autoseg.training.speed import SpeedLevers

EXIT_INVALID = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the full usage is ``--help``'s job)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (``--epochs 0`` would silently mean the plans' value)."""
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got '{text}'") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def dataset_name(text: str) -> str:
    """One folder name below the roots (``""`` and ``../x`` would write beside or outside)."""
    problem = dataset_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_augment_on_flag(parser: argparse.ArgumentParser) -> None:
    """``--augment-on``, shared by ``autoseg_train`` and ``autoseg_benchmark`` (the
    benchmark must augment where training does, or its loader wait means nothing)."""
    from autoseg.training.augmentation import AUGMENT_ON

    parser.add_argument("--augment-on", choices=AUGMENT_ON, default="auto",
                        help="where augmentation runs: loader workers (cpu), the training "
                             "device after the copy (device), auto: device on CUDA")  # fmt: skip


def add_lever_flags(parser: argparse.ArgumentParser) -> None:
    """The speed levers of a training step (:class:`~autoseg.training.speed.SpeedLevers`),
    shared by ``autoseg_train`` and ``autoseg_benchmark``; defaults change nothing."""
    group = parser.add_argument_group("speed levers (results change by rounding only)")
    group.add_argument("--cudnn-benchmark", action="store_true",
                       help="CUDA: let cuDNN pick the fastest convolution algorithms")  # fmt: skip
    group.add_argument("--no-channels-last", action="store_true",
                       help="3D: keep batches and weights in the default memory order")  # fmt: skip
    precision = group.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"),
                           default="auto",
                           help="autocast: auto (CUDA: bf16 where supported, else fp16; CPU: bf16 "
                           "where it is faster here and a test step survives, else none)",
                           )  # fmt: skip
    precision.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                           help="bf16 autocast (no loss scaling; CUDA or CPU)")  # fmt: skip
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="CUDA: fp16 autocast with a GradScaler")  # fmt: skip
    group.add_argument("--fused-optimizer", action="store_true",
                       help="CUDA: fused AdamW/SGD (else torch's foreach)")  # fmt: skip
    group.add_argument("--pin-memory", action="store_true",
                       help="CUDA: page-locked loader batches, non-blocking copies")  # fmt: skip
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the network (eager if that fails, saying why)",
                       )  # fmt: skip


def levers_from(args: argparse.Namespace) -> SpeedLevers:
    """The :class:`~autoseg.training.speed.SpeedLevers` of parsed lever flags."""
    from autoseg.training.speed import SpeedLevers

    return SpeedLevers(
        cudnn_benchmark=args.cudnn_benchmark,
        channels_last=not args.no_channels_last,
        precision=args.precision,
        fused_optimizer=args.fused_optimizer,
        pin_memory=args.pin_memory,
        compile=args.compile,
    )


def add_lesion_flags(parser: argparse.ArgumentParser) -> None:
    """``--bids-out``, ``--atlas``, ``--atlas-names``: shared by predict and evaluate."""
    parser.add_argument(
        "--bids-out",
        type=Path,
        metavar="DIR",
        help="also write a BIDS derivative dataset (sub-X/ses-Y/anat/..._desc-lesion_mask, "
        "sidecars, lesions.tsv, cases.tsv)",
    )
    parser.add_argument(
        "--atlas", type=Path, metavar="LABELS", help="label atlas in the images' space"
    )
    parser.add_argument(
        "--atlas-names", type=Path, metavar="TSV", help="its region names (columns index, name)"
    )


def lesion_outputs_from(args: argparse.Namespace, convention: str | None) -> LesionOutputs:
    """The LesionOutputs of the lesion flags (the atlas read and checked now)."""
    from autoseg.evaluation.lesion_files import load_atlas
    from autoseg.pipeline.lesion_outputs import LesionOutputs

    if (args.atlas is None) != (args.atlas_names is None):
        raise InvalidInputError("--atlas and --atlas-names go together (labels and their names)")
    atlas = None if args.atlas is None else load_atlas(args.atlas, args.atlas_names)
    return LesionOutputs(args.bids_out, convention, atlas, args.command_line)
