"""Test Dice and lesion-wise F1 against training minutes, per configuration (and nnU-Net).

Usage::

    python benchmarks/learning_curve.py --work-dir /tmp/lc [--kind atlas] \\
        [--train-cases 40] [--test-cases 20] [--minutes 5 10 20 40] \\
        [--configurations 3d_hybrid 2.5d_unet 2d_lcnn] [--nnunet-python PY] \\
        [--plot docs/images/learning_curve.png] [--tools autoseg nnunet]

Makes a training set and a held-out test set (another seed: other subjects, other site
looks) with the harder synthetic generator, converts and plans the training set with
autoseg's CPU planner, then for every configuration and budget trains fold ``all`` with
``autoseg_train --max-minutes M`` (its schedule fitted into the budget), predicts the test
set with the default predictor (sliding window, mirroring TTA, the plans' size rule) and
scores it: mean Dice, lesion-wise F1, and the results by lesion size
(:mod:`autoseg.evaluation.by_size`). It then scores the opt-in postprocessing too
(``_post``): fold all validated on its own training cases (``autoseg_train --val-only``),
a minimum lesion size chosen there by ``autoseg_find_best``, applied to the same
predictions. With
``--nnunet-python`` nnU-Net v2 is run at the same budgets with a CPU-feasible plan
(``benchmarks/nnunet_peer.py``) and scored the same way.

Each run is a subprocess timed on the wall clock; its row is written to
``<work-dir>/rows/<tool>_<config>_<minutes>.json`` when it finishes, so an interrupted
benchmark resumes where it stopped. Rows measured while other jobs ran are not
comparable: run it on a quiet machine, and say so when it was not.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from autoseg.core.atomic import read_json, write_json
from autoseg.data.io import read_volume, write_label
from autoseg.evaluation.by_size import case_table, lesion_table, score_folders
from autoseg.inference.postprocess import postprocess

BIN = Path(sys.executable).parent
SOURCES = {  # synthetic kind -> (converter kind, extra converter arguments)
    "atlas": ("atlas", []),
    "ct-png": ("png-slices", []),
    "dwi": ("npy", []),
}
CONNECTIVITY = 26  # ISLES'22 lesion rule for the per-lesion recall


def run(command: list[str], log: Path, env: dict | None = None) -> float:
    """Run a command to a log file; returns its wall seconds; raises on failure."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); see {log}")
    return time.perf_counter() - started


def environment(work: Path) -> dict:
    return {**os.environ, "AUTOSEG_HOME": str(work / "home")}


def make_data(args: argparse.Namespace, work: Path) -> None:
    """Synthesise, convert and plan (once; every step resumes)."""
    env, logs = environment(work), work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    extra = ["--png-bits", str(args.png_bits)] if args.kind == "ct-png" else []
    spacing = ["--spacing", *map(str, args.spacing)] if args.spacing else []
    kind, converter_extra = SOURCES[args.kind]
    for name, cases, seed in (
        ("LC", args.train_cases, args.seed),
        ("LC_test", args.test_cases, args.seed + 1),
    ):
        if (work / "home" / "raw" / name / "dataset.json").is_file():
            continue
        source = work / "src" / name
        run(
            [
                str(BIN / "autoseg_synth"),
                args.kind,
                str(source),
                "--cases",
                str(cases),
                "--seed",
                str(seed),
                "--size",
                args.size,
                *extra,
                *spacing,
            ],
            logs / f"synth_{name}.log",
            env,
        )
        convert_spacing = spacing if args.kind != "atlas" else []
        run(
            [
                str(BIN / "autoseg_convert"),
                kind,
                str(source),
                "-d",
                name,
                *convert_spacing,
                *converter_extra,
            ],
            logs / f"convert_{name}.log",
            env,
        )
    if not (work / "home" / "preprocessed" / "LC" / "plans.json").is_file():
        run([str(BIN / "autoseg_plan"), "-d", "LC", "--no-progress"], logs / "plan.log", env)


def score(work: Path, predictions: Path) -> dict:
    """Mean Dice, lesion F1 (challenge metrics) and the by-size tables of a prediction."""
    labels = work / "home" / "raw" / "LC_test" / "labelsTr"
    metrics = predictions.parent / f"metrics_{predictions.name}.json"  # one per TTA setting
    run(
        [
            str(BIN / "autoseg_evaluate"),
            "-r",
            str(labels),
            "-p",
            str(predictions),
            "-o",
            str(metrics),
            "--overwrite",
        ],
        predictions.parent / f"evaluate_{predictions.name}.log",
    )
    mean = read_json(metrics)["mean"]
    cases, lesions = score_folders(labels, predictions, CONNECTIVITY)
    return {
        "dice": mean["dice"],
        "lesion_f1": mean["lesion_f1"],
        "hd95_mm": mean.get("hd95_mm"),
        "abs_volume_diff_ml": mean["abs_volume_diff_ml"],
        "by_case_volume": case_table(cases),
        "by_lesion_volume": lesion_table(lesions),
    }


def autoseg_row(work: Path, configuration: str, minutes: float) -> dict:
    """Train fold all for ``minutes``, predict the test set (with and without mirroring
    TTA), score both, then the opt-in postprocessing (:func:`resubstitution_postprocessing`)."""
    run_dir = work / "runs" / f"autoseg_{configuration}_{minutes:g}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**environment(work), "AUTOSEG_RESULTS": str(run_dir / "results")}
    train = [
        str(BIN / "autoseg_train"),
        "LC",
        configuration,
        "all",
        "--max-minutes",
        f"{minutes:g}",
        "--skip-validation",
        "--no-progress",
        "--overwrite",
    ]
    train_seconds = run(train, run_dir / "train.log", env)
    # the default predictor (the plans' size rule), not a choice of an interrupted attempt
    (run_dir / "results" / "LC" / "inference.json").unlink(missing_ok=True)
    images = work / "home" / "raw" / "LC_test" / "imagesTr"
    cases = len(list(images.iterdir()))
    row: dict = {"train_seconds": train_seconds, "epochs": epochs_of(run_dir, configuration)}
    for suffix, flags in (("", []), ("_no_tta", ["--disable-tta"])):
        predictions = run_dir / f"predictions{suffix}"
        predict = [
            str(BIN / "autoseg_predict"),
            "-i",
            str(images),
            "-o",
            str(predictions),
            "-d",
            "LC",
            "-c",
            configuration,
            "-f",
            "all",
            "--overwrite",
            "--no-progress",
            *flags,
        ]
        seconds = run(predict, run_dir / f"predict{suffix}.log", env)
        scores = {"predict_seconds_per_case": seconds / max(1, cases), **score(work, predictions)}
        row.update({f"{key}{suffix}": value for key, value in scores.items()})
    row.update(resubstitution_postprocessing(work, run_dir, configuration, env))
    return row


def resubstitution_postprocessing(work: Path, run_dir: Path, configuration: str, env: dict) -> dict:
    """The opt-in step: validate fold all on its own training cases, let autoseg_find_best
    choose a minimum lesion size there, apply it to the TTA predictions and score them
    (keys ending in ``_post``)."""
    fold_all = [str(BIN / "autoseg_train"), "LC", configuration, "all", "--no-progress"]
    seconds = run([*fold_all, "--val-only"], run_dir / "validate.log", env)
    seconds += run([str(BIN / "autoseg_find_best"), "LC"], run_dir / "find_best.log", env)
    spec = read_json(run_dir / "results" / "LC" / "inference.json").get("postprocessing") or {}
    if not set(spec) <= {"min_component_voxels", "min_lesion_ml"}:
        raise RuntimeError(f"find_best chose {spec} on fold all; expected a size cut only")
    raw, post = run_dir / "predictions", run_dir / "predictions_post"
    post.mkdir(exist_ok=True)
    for path in sorted(raw.glob("*.nii.gz")):
        labels, meta = read_volume(path)
        kept = postprocess(labels.astype(np.uint8), spec, spacing_mm=meta.spacing_mm)
        write_label(post / path.name, kept, meta)
    scores = score(work, post)
    return {"postprocessing": spec, "validate_seconds": seconds,
            **{f"{key}_post": value for key, value in scores.items()}}  # fmt: skip


def epochs_of(run_dir: Path, configuration: str) -> int:
    """Epochs the run trained (rows of its training log)."""
    log = run_dir / "results" / "LC" / configuration / "fold_all" / "training_log.csv"
    return max(0, len(log.read_text().splitlines()) - 1) if log.is_file() else 0


def nnunet_row(work: Path, minutes: float, python: str) -> dict:
    """nnU-Net v2 at the same budget with a CPU-feasible plan (benchmarks/nnunet_peer.py),
    predicted without mirroring TTA (with it, 5 minutes per case on this CPU)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from nnunet_peer import run_peer

    raw = work / "home" / "raw"
    summary = run_peer(raw / "LC", raw / "LC_test" / "imagesTr", work / "nnunet", minutes,
                       nnunet_python=python, tta=False)  # fmt: skip
    return {**summary, **score(work, Path(summary["predictions"]))}


def row_path(work: Path, tool: str, configuration: str, minutes: float) -> Path:
    return work / "rows" / f"{tool}_{configuration}_{minutes:g}.json"


def collect(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every (tool, configuration, budget) row, running the missing ones."""
    jobs = []
    if "autoseg" in args.tools:
        jobs += [("autoseg", c, m) for c in args.configurations for m in args.minutes]
    if "nnunet" in args.tools and args.nnunet_python:
        jobs += [("nnunet", "3d_fullres", m) for m in args.minutes]
    rows = []
    for tool, configuration, minutes in jobs:
        path = row_path(work, tool, configuration, minutes)
        if not path.is_file():
            print(f"running {tool} {configuration} {minutes:g} min", flush=True)
            row = (
                autoseg_row(work, configuration, minutes)
                if tool == "autoseg"
                else nnunet_row(work, minutes, args.nnunet_python)
            )
            write_json(
                path, {"tool": tool, "configuration": configuration, "minutes": minutes, **row}
            )
        rows.append(read_json(path))
    return rows


def small_recall(row: dict, suffix: str) -> str:
    """Recall under 1.5 ml of one prediction variant ("-" where the row has none)."""
    table = row.get(f"by_lesion_volume{suffix}")
    return f"{table[0]['recall']:.2f}" if table and table[0]["recall"] is not None else "-"


def format_rows(rows: list[dict]) -> str:
    """One line per run, with the by-size figures the issue asks for."""
    header = (
        "tool     configuration  min  epochs  Dice   F1     |dV| ml  "
        "Dice<1.5 Dice1.5-10 Dice10-20 Dice>20  rec<1.5 rec1.5-10 rec>10  s/case  Dice(noTTA)"
        "  Dice(post) rec<1.5(post)"
    )
    lines = [header]
    for row in rows:
        by_case = [r["mean_dice"] for r in row["by_case_volume"]]
        recall = [r["recall"] for r in row["by_lesion_volume"]]
        cells = " ".join(f"{v:8.3f}" if v is not None else "       -" for v in by_case + recall)
        lines.append(
            f"{row['tool']:<8} {row['configuration']:<13} {row['minutes']:>4g} "
            f"{row.get('epochs', 0):>6} {row['dice']:.3f}  {row['lesion_f1']:.3f}  "
            f"{row['abs_volume_diff_ml']:7.2f} {cells}  "
            f"{row.get('predict_seconds_per_case', float('nan')):6.1f}  "
            f"{row.get('dice_no_tta', row['dice']):.3f}  "
            f"{row.get('dice_post', math.nan):.3f}      {small_recall(row, '_post')}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Dice and lesion F1 against training minutes, one line per tool/configuration."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[str, list[dict]] = {}
    for row in rows:
        tta = " (no TTA)" if row["tool"] == "nnunet" else ""
        series.setdefault(f"{row['tool']} {row['configuration']}{tta}", []).append(row)
    for name, points in sorted(series.items()):
        points.sort(key=lambda r: r["minutes"])
        minutes = [p["minutes"] for p in points]
        style = "--" if name.startswith("nnunet") else "-"
        for axis, key in zip(axes, ("dice", "lesion_f1"), strict=True):
            axis.plot(minutes, [p[key] for p in points], style, marker="o", label=name)
    budgets = sorted({row["minutes"] for row in rows})
    for axis, label in zip(axes, ("mean test Dice", "lesion-wise F1"), strict=True):
        axis.set_xscale("log", base=2)
        axis.set_xticks(budgets, [f"{m:g}" for m in budgets])
        axis.minorticks_off()
        axis.set_xlabel("training minutes (CPU)")
        axis.set_ylabel(label)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--kind", choices=sorted(SOURCES), default="atlas")
    parser.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--png-bits", type=int, choices=(8, 16), default=16)
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--test-cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--configurations", nargs="+", default=["3d_hybrid", "2.5d_unet", "2d_lcnn"]
    )
    parser.add_argument("--nnunet-python", help="python of a venv with nnunetv2 (the peer)")
    parser.add_argument(
        "--tools",
        nargs="+",
        choices=("autoseg", "nnunet"),
        default=["autoseg", "nnunet"],
        help="run only these (two invocations sharing --work-dir, each under its own "
        "`taskset -c N`, give both tools one core each at the same time)",
    )
    parser.add_argument("--plot", type=Path, help="write the learning-curve PNG here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    work = args.work_dir.resolve()
    make_data(args, work)
    rows = collect(args, work)
    print(format_rows(rows))
    medians = {
        c: statistics.median(
            r["predict_seconds_per_case"]
            for r in rows
            if r["configuration"] == c and "predict_seconds_per_case" in r
        )
        for c in {r["configuration"] for r in rows}
    }
    print("median prediction s/case:", {k: round(v, 1) for k, v in sorted(medians.items())})
    if args.plot:
        plot(
            rows,
            args.plot,
            f"{args.kind}: {args.train_cases} training / "
            f"{args.test_cases} held-out cases, harder generator",
        )
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
