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
import shlex
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from autoseg.cli_args import (
    OneLineParser,
    add_augment_on_flag,
    add_lever_flags,
    dataset_name,
    levers_from,
    positive_int,
)
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
    except PermissionError as error:  # the checks up front missed it (e.g. a changed mount)
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


def _parse_and_run(
    parser: argparse.ArgumentParser,
    command: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    args = parser.parse_args(argv)
    # The command as typed, for provenance records (library code never reads sys.argv).
    args.command_line = shlex.join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
    if hasattr(args, "home"):
        args.workspace = workspace_from(args, os.environ)
    return run(command, args)


# --- autoseg_synth -----------------------------------------------------------------------


def synth_parser() -> argparse.ArgumentParser:
    from autoseg.data.synthetic import SYNTHETIC_KINDS

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
        skull_stripped=args.skull_stripped,
        png_bits=args.png_bits,
    )
    print(f"wrote {len(written)} files under {args.dest}")
    return EXIT_OK


def synth_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(synth_parser(), _synth, argv)


# --- autoseg_convert ---------------------------------------------------------------------


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
    return _parse_and_run(convert_parser(), _convert, argv)


# --- autoseg_plan ------------------------------------------------------------------------


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
    for name, config in sorted(plans.configurations.items()):
        marker = "*" if name == plans.recommended_configuration else " "
        print(
            f" {marker} {name:10s} patch {list(config.patch_size)} batch {config.batch_size} "
            f"params {config.parameters / 1e6:.1f} M, memory {config.memory_estimate_gb} GB"
        )
    for data_id, folder in result.cache_folders.items():
        print(f"   cache {data_id} -> {folder}")
    return EXIT_OK


def plan_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(plan_parser(), _plan, argv)


# --- autoseg_train -----------------------------------------------------------------------


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
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
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


def _fold(text: str) -> int | str:
    if text == "all":
        return text
    if not text.isdigit():
        raise InvalidInputError(f"fold must be a number or 'all', not '{text}'")
    return int(text)


def _relaunch_with_torchrun(num_gpus: int, argv: Sequence[str]) -> int:
    """``--num-gpus N``: run the same command as N DDP processes under torchrun."""
    import subprocess

    rest = [a for i, a in enumerate(argv) if a != "--num-gpus" and argv[i - 1] != "--num-gpus"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={num_gpus}", "-m", "autoseg.training", *rest]  # fmt: skip
    return subprocess.call(command)


def _train_options(args: argparse.Namespace, environ: Mapping[str, str]):
    from autoseg.pipeline.training import TrainOptions
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
    from autoseg.pipeline.training import train_fold
    from autoseg.pipeline.validation import validate_fold
    from autoseg.training.distributed import shutdown_distributed
    from autoseg.training.trainer import EXIT_INTERRUPTED, TrainingInterrupted

    fold = _fold(args.fold)
    options = _train_options(args, os.environ)
    try:
        if not args.val_only:
            folder = train_fold(args.workspace, args.dataset, args.configuration, fold, options)
            print(f"trained -> {folder}")
    except TrainingInterrupted as interrupted:
        print(f"interrupted: {interrupted}; resume with: {_resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"interrupted; resume with: {_resume_command(args)}", file=sys.stderr)
        return 130
    finally:
        shutdown_distributed()
    if options.distributed.rank == 0 and not args.skip_validation:
        summary = validate_fold(
            args.workspace,
            args.dataset,
            args.configuration,
            fold,
            device=args.device,
            progress=not args.no_progress,
        )
        if summary is not None:
            print(
                f"validation Dice {_number(summary['mean'].get('dice'))} "
                f"({summary['num_cases']} cases)"
            )
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


# --- autoseg_slurm -----------------------------------------------------------------------


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
        [_fold(f) for f in args.folds],
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


# --- autoseg_predict ---------------------------------------------------------------------


def predict_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_predict",
        description="Segment a folder of images with trained folds (sliding window, "
        "Gaussian weighting, mirroring TTA, fold/configuration ensemble) and write label "
        "maps in each input's own geometry.",
    )
    parser.add_argument("-i", "--input", type=Path, required=True, help="images to segment")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write")
    parser.add_argument(
        "-d", "--dataset", help="trained dataset (uses results/NAME)", type=dataset_name
    )
    parser.add_argument("-m", "--model", type=Path, help="a model zip from autoseg_export")
    parser.add_argument("-c", "--configurations", nargs="+", help="default: find_best's choice")
    parser.add_argument("-f", "--folds", nargs="+", help="default: every trained fold")
    parser.add_argument("--checkpoint", choices=("final", "best"), help="default: final")
    parser.add_argument("--step", type=float, help="window step as a fraction of the patch")
    parser.add_argument("--disable-tta", action="store_true", help="no mirroring TTA")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    parser.add_argument("--save-probabilities", action="store_true", help="also write .npz")
    parser.add_argument(
        "--save-uncertainty",
        action="store_true",
        help="entropy and fold-disagreement maps, per-lesion confidence",
    )
    parser.add_argument(
        "--continue", dest="resume", action="store_true", help="skip cases whose output exists"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--num-parts", type=positive_int, default=1, help="split the inputs in N parts"
    )
    parser.add_argument("--part-id", type=int, default=0, help="which part this process does")
    parser.add_argument(
        "--source",
        choices=("png-slices", "npy", "isles22"),
        help="inputs in a converter's layout instead of NIfTI/MHA files (isles22: a BIDS "
        "tree, channels as the model was trained)",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="voxel size for --source inputs without one",
    )
    add_lesion_flags(parser)
    parser.add_argument(
        "--convention",
        choices=("isles22", "atlas"),
        help="lesion rules of the tables: isles22 (26-connected) or atlas (6); default "
        "find_best's, else isles22",
    )
    parser.add_argument(
        "--no-calibration", action="store_true", help="ignore find_best's temperatures"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_workspace_flags(parser)
    return parser


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


def lesion_outputs_from(args: argparse.Namespace, convention: str | None):
    """The LesionOutputs of the lesion flags (the atlas read and checked now)."""
    from autoseg.evaluation.lesion_files import load_atlas
    from autoseg.pipeline.lesion_outputs import LesionOutputs

    if (args.atlas is None) != (args.atlas_names is None):
        raise InvalidInputError("--atlas and --atlas-names go together (labels and their names)")
    atlas = None if args.atlas is None else load_atlas(args.atlas, args.atlas_names)
    return LesionOutputs(args.bids_out, convention, atlas, args.command_line)


def _predict(args: argparse.Namespace) -> int:
    from autoseg.pipeline.predict import predict

    if not args.dataset and not args.model:
        raise InvalidInputError("give the trained dataset (-d NAME) or a model zip (-m FILE)")
    written = predict(
        args.workspace,
        args.dataset,
        args.input,
        args.output,
        configurations=args.configurations,
        folds=[_fold(f) for f in args.folds] if args.folds else None,
        model_zip=args.model,
        step=args.step,
        disable_tta=args.disable_tta,
        device=args.device,
        save_probabilities=args.save_probabilities,
        save_uncertainty=args.save_uncertainty,
        overwrite=args.overwrite,
        resume=args.resume,
        num_parts=args.num_parts,
        part_id=args.part_id,
        checkpoint=args.checkpoint,
        source=args.source,
        spacing=tuple(args.spacing) if args.spacing else None,
        progress=not args.no_progress,
        lesion_outputs=lesion_outputs_from(args, args.convention),
        calibrate=not args.no_calibration,
    )
    print(f"predicted {len(written)} cases -> {args.output} (lesions.tsv, cases.tsv)")
    if args.bids_out:
        print(f"BIDS derivatives -> {args.bids_out}")
    return EXIT_OK


def predict_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(predict_parser(), _predict, argv)


# --- autoseg_export ----------------------------------------------------------------------


def export_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_export",
        description="Package trained folds as a model zip (weights, plans, dataset.json, "
        "inference contract) for offline use with autoseg_predict -m, or one fold as ONNX.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="trained dataset", type=dataset_name)
    parser.add_argument("-c", "--configurations", nargs="+", help="default: find_best's choice")
    parser.add_argument("-f", "--folds", nargs="+", help="default: every trained fold")
    parser.add_argument("-o", "--output", type=Path, help="model zip to write")
    parser.add_argument("--onnx", type=Path, help="write one fold as ONNX (+ contract JSON)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing zip")
    add_workspace_flags(parser)
    return parser


def _export(args: argparse.Namespace) -> int:
    from autoseg.data.paths import ensure_writable_file
    from autoseg.pipeline.export import export_model_zip, export_onnx_from_results
    from autoseg.pipeline.model import results_folder

    if not args.output and not args.onnx:
        raise InvalidInputError("give -o model.zip and/or --onnx model.onnx")
    results = results_folder(args.workspace, args.dataset)
    folds = [_fold(f) for f in args.folds] if args.folds else None
    if args.onnx:  # refused before the zip is written, not after
        if not args.configurations or len(args.configurations) != 1 or not folds or len(folds) != 1:
            raise InvalidInputError(
                "--onnx exports one network: give one -c CONFIG and one -f FOLD"
            )
        ensure_writable_file(args.onnx, "ONNX file")
    if args.output:
        path = export_model_zip(
            results,
            args.configurations,
            folds,
            args.output,
            checkpoint=args.checkpoint,
            overwrite=args.overwrite,
        )
        print(f"model zip: {path}")
    if args.onnx:
        onnx_path, contract = export_onnx_from_results(
            results, args.configurations[0], folds[0], args.onnx, checkpoint=args.checkpoint
        )
        print(f"onnx: {onnx_path} (contract {contract})")
    return EXIT_OK


def export_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(export_parser(), _export, argv)


# --- autoseg_find_best -------------------------------------------------------------------


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
    return _parse_and_run(find_best_parser(), _find_best, argv)


# --- autoseg_ensemble --------------------------------------------------------------------


def ensemble_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_ensemble",
        description="Average the saved probabilities (--save-probabilities) of several "
        "prediction folders and write the ensemble's label maps.",
    )
    parser.add_argument("-i", "--inputs", type=Path, nargs="+", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="images giving the geometry if needed")
    parser.add_argument("--save-probabilities", action="store_true")
    parser.add_argument("--continue", dest="resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def _ensemble(args: argparse.Namespace) -> int:
    from autoseg.inference.ensemble import ensemble_folders

    written = ensemble_folders(
        args.inputs,
        args.output,
        reference_dir=args.reference,
        save_probabilities=args.save_probabilities,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    print(f"ensembled {len(written)} cases -> {args.output}")
    return EXIT_OK


def ensemble_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(ensemble_parser(), _ensemble, argv)


# --- autoseg_report ----------------------------------------------------------------------


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
    return _parse_and_run(report_parser(), _report, argv)


# --- autoseg_visualize -------------------------------------------------------------------


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
    return _parse_and_run(visualize_parser(), _visualize, argv)


# --- autoseg_demo ------------------------------------------------------------------------


def demo_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_demo",
        description="The whole job on built-in synthetic ATLAS-like data: synth, convert, "
        "verify, plan, train the recommended configuration within the budget, predict "
        "held-out cases, evaluate, and write the HTML report. Re-running resumes.",
    )
    parser.add_argument("--minutes", type=float, default=15.0, help="budget of the whole demo")
    parser.add_argument("--cases", type=int, default=20, help="synthetic training cases")
    parser.add_argument("--holdout-cases", type=int, default=6, help="held-out test cases")
    parser.add_argument("--config", help="configuration to train (default: the planner's)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="small: 2 mm (default); full: the 1 mm ATLAS grid",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_workspace_flags(parser)
    return parser


def _demo(args: argparse.Namespace) -> int:
    import time

    from autoseg.pipeline.demo import DemoOptions, format_summary, run_demo

    started = time.perf_counter()
    options = DemoOptions(
        home=args.workspace.raw.parent,
        minutes=args.minutes,
        cases=args.cases,
        holdout_cases=args.holdout_cases,
        configuration=args.config,
        device=args.device,
        size=args.size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    summary = run_demo(options)
    print(format_summary(summary, time.perf_counter() - started))
    return EXIT_OK


def demo_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(demo_parser(), _demo, argv)


# --- autoseg_evaluate --------------------------------------------------------------------


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
    from autoseg.data.layout import resolve_dataset_dir
    from autoseg.data.verify import format_report, verify_dataset

    root = resolve_dataset_dir(args.workspace.raw, args.dataset)
    report = verify_dataset(root, num_processes=args.num_processes, progress=not args.no_progress)
    # The reasons for a failure belong on stderr (exit 2), a clean report on stdout.
    print(format_report(report), file=sys.stdout if report.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_INVALID


def verify_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(verify_parser(), _verify, argv)


# --- autoseg_benchmark -------------------------------------------------------------------


def benchmark_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_benchmark",
        description="Time one planned configuration on this device: s/iteration with the "
        "training loader and with one batch reused (the loader's share), peak memory against "
        "the plans' estimate, prediction s/case with and without TTA; a table on screen and "
        "JSON on disk.",
    )
    parser.add_argument(
        "-d", "--dataset", required=True, help="dataset name (or nnU-Net id)", type=dataset_name
    )
    parser.add_argument("-c", "--configuration", required=True, help="e.g. 3d_hybrid")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--fold", default="0", help="whose cases (and checkpoint) to use")
    parser.add_argument("--iterations", type=positive_int, default=10,
                        help="timed steps per measurement (default 10)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps before them (default 2)")  # fmt: skip
    parser.add_argument("-nw", "--num-workers", type=int, help="loader processes (0: inline)")
    parser.add_argument("--prediction-cases", type=int, default=2,
                        help="cases predicted with and without TTA (0: none)")  # fmt: skip
    parser.add_argument("--sweep", nargs="*", metavar="LEVER",
                        help="one run per lever toggled from the levers given (all levers, "
                             "or the ones named, e.g. --sweep precision compile)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="JSON file (default results/NAME/CONFIG/benchmark_DEV.json)"
    )
    parser.add_argument("--seed", type=int, default=12345, help="initialisation and batches")
    add_augment_on_flag(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_lever_flags(parser)
    add_workspace_flags(parser)
    return parser


def _benchmark(args: argparse.Namespace) -> int:
    from autoseg.pipeline.benchmark import BenchmarkOptions, format_report, run_benchmark

    options = BenchmarkOptions(
        device=args.device, fold=_fold(args.fold), iterations=args.iterations,
        warmup=args.warmup, num_workers=args.num_workers,
        prediction_cases=args.prediction_cases, levers=levers_from(args),
        sweep=args.sweep is not None, sweep_levers=tuple(args.sweep or ()),
        seed=args.seed, progress=not args.no_progress, augment_on=args.augment_on,
    )  # fmt: skip
    report, path = run_benchmark(args.workspace, args.dataset, args.configuration, options,
                                 args.out)  # fmt: skip
    print(format_report(report))
    print(f"wrote {path}")
    return EXIT_OK


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    return _parse_and_run(benchmark_parser(), _benchmark, argv)
