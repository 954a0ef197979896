"""``autoseg_predict``, ``autoseg_ensemble``, ``autoseg_export``: applying and packaging
trained models."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from autoseg.cli.args import (
    OneLineParser,
    add_lesion_flags,
    dataset_name,
    lesion_outputs_from,
    positive_int,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    fold_arg,
    parse_and_run,
)
from autoseg.core.errors import InvalidInputError


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
    parser.add_argument(
        "--amp",
        action="store_true",
        help="autocast: float16 on CUDA, bf16 on a CPU where it is faster (AMX: half the time)",
    )
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
    parser.add_argument(
        "--no-postprocessing",
        action="store_true",
        help="ignore the plans' size rule and find_best's postprocessing: keep every "
        "lesion the argmax gives",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_workspace_flags(parser)
    return parser


def _predict(args: argparse.Namespace) -> int:
    from autoseg.pipeline.predict_step import PredictOptions, predict

    if not args.dataset and not args.model:
        raise InvalidInputError("give the trained dataset (-d NAME) or a model zip (-m FILE)")
    options = PredictOptions(
        configurations=args.configurations,
        folds=[fold_arg(f) for f in args.folds] if args.folds else None,
        model_zip=args.model,
        step=args.step,
        disable_tta=args.disable_tta,
        amp=args.amp,
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
        postprocess=not args.no_postprocessing,
    )
    written = predict(args.workspace, args.dataset, args.input, args.output, options)
    print(f"predicted {len(written)} cases -> {args.output} (lesions.tsv, cases.tsv)")
    if args.bids_out:
        print(f"BIDS derivatives -> {args.bids_out}")
    return EXIT_OK


def predict_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(predict_parser(), _predict, argv)


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
    return parse_and_run(ensemble_parser(), _ensemble, argv)


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
    from autoseg.core.paths import ensure_writable_file
    from autoseg.core.run_layout import RunLayout
    from autoseg.pipeline.export import export_model_zip, export_onnx_from_results

    if not args.output and not args.onnx:
        raise InvalidInputError("give -o model.zip and/or --onnx model.onnx")
    results = RunLayout.of_results(args.workspace, args.dataset).results
    folds = [fold_arg(f) for f in args.folds] if args.folds else None
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
    return parse_and_run(export_parser(), _export, argv)
