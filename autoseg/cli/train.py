"""``autoseg_train`` (one fold: train, then validate) and ``autoseg_slurm`` (an sbatch array
of folds)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autoseg.cli.args import (
    OneLineParser,
    add_augment_on_flag,
    add_lever_flags,
    dataset_name,
    levers_from,
    positive_int,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    fold_arg,
    format_number,
    run,
    workspace_from,
)

if TYPE_CHECKING:  # imported where used: parsing flags must not wait for torch
    from autoseg.pipeline.fold_trainer import TrainOptions


def train_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_train",
        description="Train one fold of a configuration from plans.json, then predict and "
        "score the fold's validation cases (fold/validation/summary.json).",
    )
    parser.add_argument("dataset", help="dataset name (or nnU-Net id)", type=dataset_name)
    parser.add_argument("configuration", help="3d_hybrid, 2.5d_unet or 2d_lcnn")
    parser.add_argument("fold", help="fold of splits.json (0-4) or 'all'")
    parser.add_argument(
        "--continue",
        dest="continue_training",
        action="store_true",
        help="resume from checkpoint_latest.pt",
    )
    parser.add_argument("--overwrite", action="store_true", help="start a finished fold afresh")
    parser.add_argument("--epochs", type=positive_int, help="override the plans' epochs")
    parser.add_argument(
        "--iters-per-epoch", type=positive_int, help="override iterations per epoch"
    )
    parser.add_argument("--max-minutes", type=float,
                        help="train this long: the run gets the epochs that fit (more or fewer "
                             "than planned; --epochs caps them), so the LR schedule decays to "
                             "its end inside the budget")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    parser.add_argument("-nw", "--num-workers", type=int, help="loader processes (0: inline)")
    add_augment_on_flag(parser)
    parser.add_argument("--pretrained", type=Path, help="checkpoint to initialise from")
    parser.add_argument("--freeze", choices=("encoder",), help="freeze part of the network")
    parser.add_argument("--tracker", choices=("mlflow", "wandb"), help="also log to a tracker")
    parser.add_argument("--tracking-uri", help="MLflow URI (or $MLFLOW_TRACKING_URI)")
    parser.add_argument("--seed", type=int, default=12345, help="initialisation and batches")
    parser.add_argument(
        "--no-amp", action="store_true", help="full precision (no autocast on CUDA or a bf16 CPU)"
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=30.0,
        help="also write checkpoint_latest.pt this often within an epoch",
    )
    parser.add_argument(
        "--early-stopping",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs without EMA Dice improvement",
    )
    parser.add_argument(
        "--patch-growth",
        type=float,
        metavar="FRACTION",
        help="start with this fraction of the planned patch, growing to it",
    )
    parser.add_argument("--num-gpus", type=int, default=1, help="> 1: relaunch under torchrun")
    parser.add_argument("--val-only", action="store_true", help="redo the validation only")
    parser.add_argument(
        "--skip-validation",
        action="store_true",
        help="do not predict the validation cases at the end",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_lever_flags(parser)
    add_workspace_flags(parser)
    return parser


def _relaunch_with_torchrun(num_gpus: int, argv: Sequence[str]) -> int:
    """``--num-gpus N``: run the same command as N DDP processes under torchrun."""
    import subprocess

    rest = [a for i, a in enumerate(argv) if a != "--num-gpus" and argv[i - 1] != "--num-gpus"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={num_gpus}", "-m", "autoseg", "train", *rest]  # fmt: skip
    return subprocess.call(command)


def _train_options(args: argparse.Namespace, environ: Mapping[str, str]) -> TrainOptions:
    from autoseg.pipeline.fold_trainer import TrainOptions
    from autoseg.training.distributed import context_from_env

    return TrainOptions(
        epochs=args.epochs,
        iterations_per_epoch=args.iters_per_epoch,
        device=args.device,
        num_workers=args.num_workers,
        augment_on=args.augment_on,
        continue_training=args.continue_training,
        overwrite=args.overwrite,
        pretrained=args.pretrained,
        freeze=args.freeze,
        tracker=args.tracker,
        tracking_uri=args.tracking_uri or environ.get("MLFLOW_TRACKING_URI"),
        seed=args.seed,
        amp=not args.no_amp,
        checkpoint_minutes=args.checkpoint_minutes,
        max_minutes=args.max_minutes,
        early_stopping_patience=args.early_stopping,
        patch_growth=args.patch_growth,
        progress=not args.no_progress,
        distributed=context_from_env(environ),
        levers=levers_from(args),
    )


def _train(args: argparse.Namespace) -> int:
    from autoseg.pipeline.fit_fold import InterruptedTraining, fit_fold
    from autoseg.training.trainer import EXIT_INTERRUPTED, TrainingInterrupted

    fold = fold_arg(args.fold)
    options = _train_options(args, os.environ)
    try:
        summary = fit_fold(args.workspace, args.dataset, args.configuration, fold, options,
                           train=not args.val_only, validate=not args.skip_validation)  # fmt: skip
    except TrainingInterrupted as interrupted:
        print(f"interrupted: {interrupted}; resume with: {_resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InterruptedTraining:
        print(f"interrupted; resume with: {_resume_command(args)}", file=sys.stderr)
        return 130
    if summary is not None:
        cases = "training cases: optimistic" if fold == "all" else "cases"
        print(
            f"validation Dice {format_number(summary['mean'].get('dice'))} "
            f"({summary['num_cases']} {cases})"
        )
        if fold == "all":
            print(f"choose postprocessing for it: autoseg_find_best {args.dataset}")
    return EXIT_OK


def _resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run: its own flags, ``--continue`` for ``--overwrite``."""
    import shlex

    kept = [word for word in args.argv if word not in ("--continue", "--overwrite")]
    return shlex.join(["autoseg_train", *kept, "--continue"])


def train_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = train_parser().parse_args(argv)
    args.argv = argv
    if args.num_gpus > 1:
        return _relaunch_with_torchrun(args.num_gpus, argv)
    args.workspace = workspace_from(args, os.environ)
    return run(_train, args)


def slurm_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_slurm",
        description="Write an sbatch array script that trains folds on a SLURM cluster "
        "(one task per fold, requeued on preemption, resuming with --continue).",
    )
    parser.add_argument("dataset", help="dataset name", type=dataset_name)
    parser.add_argument("configuration", help="configuration to train")
    parser.add_argument("--folds", nargs="+", default=["0", "1", "2", "3", "4"])
    parser.add_argument("-o", "--output", type=Path, help="script path (default: ./train_*.sbatch)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per task")
    parser.add_argument("--cpus", type=int, default=8, help="CPUs per task")
    parser.add_argument("--mem", default="64G", help="memory per task")
    parser.add_argument("--time", default="24:00:00", help="time limit per task")
    parser.epilog = "Flags after a lone -- are passed to autoseg_train in every task."
    return parser


def _slurm(args: argparse.Namespace) -> int:
    from autoseg.pipeline.slurm import write_slurm_script

    output = args.output or Path(f"train_{args.dataset}_{args.configuration}.sbatch")
    extra = args.extra
    path = write_slurm_script(
        args.dataset,
        args.configuration,
        [fold_arg(f) for f in args.folds],
        output,
        partition=args.partition,
        gpus=args.gpus,
        cpus=args.cpus,
        mem=args.mem,
        time=args.time,
        extra_args=extra,
    )
    print(f"wrote {path or output}; submit with: sbatch {path or output}")
    return EXIT_OK


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[own flags] -- [flags for the command being wrapped]``."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


def slurm_main(argv: Sequence[str] | None = None) -> int:
    own, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = slurm_parser().parse_args(own)
    args.extra = extra
    return run(_slurm, args)
