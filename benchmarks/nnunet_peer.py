"""nnU-Net v2 trained for the same CPU minutes as autoseg: the learning curve's peer.

    python benchmarks/nnunet_peer.py RAW/PEER RAW/PEER_test/imagesTr \
        --work-dir /tmp/peer --minutes 5 10 20 40 \
        [--gpu-memory-target 0.25] [--patch 40 48 40 --batch 2] [--spacing 3 3 3] \
        [--no-tta]

``RAW/PEER`` is an autoseg raw dataset (already nnU-Net v2's raw layout: dataset.json,
``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``); the test folder holds
images named the same way. For each budget the steps are:

1. ``nnUNet_raw/DatasetNNN_<Name>``: symlinks to the raw files and a dataset.json with
   nnU-Net v2's keys (channel_names, labels, numTraining, file_ending).
2. ``nnUNetv2_plan_and_preprocess -c 3d_fullres -gpu_memory_target G`` under a plans
   name of its own: nnU-Net's planner, shrunk to a CPU-sized patch (G GB instead of its
   8; the default 0.25 GB plans autoseg's own 40x48x40 patch, batch 2, on 2 mm
   ATLAS-like heads, while 2 GB plans 80x96x80, about 8x slower per step). With
   ``--patch``/``--batch``: a copy of those plans with that patch (network topology
   re-derived by nnU-Net's own ``get_pool_and_conv_props``) and batch. Patch and batch
   do not enter nnU-Net's preprocessing (whole resampled, normalised images), so the
   edited plans reuse the preprocessed data; ``--spacing`` goes through nnU-Net's
   ``-overwrite_target_spacing`` and so gets its own preprocessing.
3. ``nnUNetv2_train NNN 3d_fullres all -tr nnUNetTrainerTimeBudget -device cpu`` with
   ``NNUNET_BUDGET_MINUTES`` set: the trainer in ``nnunet_budget_trainer.py`` (50 + 10
   iterations per epoch like autoseg's CPU plans, epochs fitted to the budget at the
   median epoch time, final validation skipped). The script copies that file into the
   nnU-Net venv's ``nnunetv2/training/nnUNetTrainer/`` (and says so): nnU-Net finds
   trainer classes only by importing the modules of that package (see
   :func:`install_trainer` for why its ``nnUNet_extTrainer`` folders fail here).
4. ``nnUNetv2_predict -f all -chk checkpoint_final.pth -device cpu`` on the test images
   (nnU-Net's default mirroring TTA; ``--no-tta`` for ~8x less time), timed per case
   from its own log lines.
5. ``WORK/runs/<plans>/<minutes>min/summary.json`` (``summary_notta.json``): the
   plans, what the budget bought, s/iteration, s/case and the prediction folder (score
   it with ``autoseg_evaluate``).

Every step is skipped when its result is already there, so a rerun resumes; a training
that did not finish is started again from scratch, because a budgeted run's minutes are
the measurement and cannot be pieced together across processes. From Python:
``run_peer(raw_dir, test_images_dir, work_dir, minutes, ...) -> dict`` (the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NNUNET_PYTHON = Path("/work/nnunet_venv/bin/python")
TRAINER_NAME = "nnUNetTrainerTimeBudget"
TRAINER_FILE = Path(__file__).with_name("nnunet_budget_trainer.py")
CONFIGURATION = "3d_fullres"
FOLD = "all"
CHECKPOINT = "checkpoint_final.pth"
BUDGET_REPORT = "budget_report.json"
LOG_TAIL_LINES = 30

# Run inside nnU-Net's venv: the 3d_fullres configuration of a plans file, optionally
# with a new patch (topology from nnU-Net's own rule and planner constants) and batch,
# and the planner's memory estimate for it in its own GB units.
PLANS_SNIPPET = r"""
import json, sys
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
    ExperimentPlanner)
from nnunetv2.experiment_planning.experiment_planners.network_topology import (
    get_pool_and_conv_props)
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
args = json.loads(sys.argv[1])
planner = ExperimentPlanner(args["dataset"])
config = json.load(open(args["plans_file"]))["configurations"][args["configuration"]]
arch = config["architecture"]
if args["patch"] is not None:
    dims = len(config["spacing"])
    _, strides, kernels, patch, _ = get_pool_and_conv_props(
        config["spacing"], args["patch"], planner.UNet_featuremap_min_edge_length, 999999)
    stages = len(strides)
    widest = planner.UNet_max_features_3d if dims == 3 else planner.UNet_max_features_2d
    arch["arch_kwargs"].update(
        n_stages=stages, strides=strides, kernel_sizes=kernels,
        features_per_stage=[min(widest, planner.UNet_base_num_features * 2 ** i)
                            for i in range(stages)],
        n_conv_per_stage=list(planner.UNet_blocks_per_stage_encoder[:stages]),
        n_conv_per_stage_decoder=list(planner.UNet_blocks_per_stage_decoder[:stages - 1]))
    config["patch_size"] = list(patch)
if args["batch"] is not None:
    config["batch_size"] = args["batch"]
channels = len(planner.dataset_json["channel_names"])
voxels = planner.static_estimate_VRAM_usage(
    tuple(config["patch_size"]), channels, len(planner.dataset_json["labels"]),
    arch["network_class_name"], arch["arch_kwargs"], tuple(arch["_kw_requires_import"]))
reference = planner.UNet_reference_val_3d if len(config["spacing"]) == 3 \
    else planner.UNet_reference_val_2d
reference_batch = planner.UNet_reference_val_corresp_bs_3d if len(config["spacing"]) == 3 \
    else planner.UNet_reference_val_corresp_bs_2d
gb = (float(voxels) * config["batch_size"] / reference_batch
      * planner.UNet_reference_val_corresp_GB / reference)
result = {"configuration": config, "memory_estimate_gb": gb}
recursive_fix_for_json_export(result)  # numpy numbers and tuples, as the planner does
print("PLANS_JSON " + json.dumps(result))
"""

VERSIONS_SNIPPET = (
    "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
    "('nnunetv2', 'torch', 'dynamic_network_architectures', 'batchgeneratorsv2')}))"
)


class PeerError(RuntimeError):
    """An nnU-Net step failed; the message names its log."""


@dataclass(frozen=True)
class Layout:
    """Where one budgeted run lives under the work dir.

    Raw, preprocessed data and plans are shared by all budgets (planning once serves the
    whole learning curve); each plans/budget pair gets its own results, predictions and
    summary, so budgets never overwrite one another.
    """

    work_dir: Path
    dataset: str
    plans: str
    minutes: float
    tta: bool = True

    @property
    def dataset_id(self) -> str:
        """The id as nnU-Net's CLIs take it: ``Dataset007_X`` -> ``7``."""
        return str(int(self.dataset[len("Dataset") : len("Dataset") + 3]))

    @property
    def raw(self) -> Path:
        return self.work_dir / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.work_dir / "nnUNet_preprocessed"

    @property
    def state(self) -> Path:
        return self.work_dir / "state"

    @property
    def run_dir(self) -> Path:
        return self.work_dir / "runs" / self.plans / f"{_tag(self.minutes)}min"

    @property
    def results(self) -> Path:
        return self.run_dir / "nnUNet_results"

    @property
    def fold_dir(self) -> Path:
        model = f"{TRAINER_NAME}__{self.plans}__{CONFIGURATION}"
        return self.results / self.dataset / model / f"fold_{FOLD}"

    @property
    def predictions(self) -> Path:
        return self.run_dir / ("predictions" if self.tta else "predictions_notta")

    @property
    def summary(self) -> Path:
        return self.run_dir / ("summary.json" if self.tta else "summary_notta.json")

    @property
    def predict_record(self) -> Path:
        return self.run_dir / ("predict.json" if self.tta else "predict_notta.json")

    @property
    def plans_file(self) -> Path:
        return self.preprocessed / self.dataset / f"{self.plans}.json"


def _tag(value: float) -> str:
    """A number as a file-name part: 2.0 -> '2', 1.5 -> '1p5'."""
    return f"{value:g}".replace(".", "p")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so that a reader (or a resumed
    run checking whether a step finished) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(temp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def log(message: str) -> None:
    print(f"[nnunet-peer] {message}", flush=True)


# --- step 1: nnU-Net's raw tree ----------------------------------------------------------


def file_ending(meta: dict[str, Any], labels_dir: Path) -> str:
    """dataset.json's file_ending, else the labels' double suffix (``.nii.gz``)."""
    if meta.get("file_ending"):
        return str(meta["file_ending"])
    names = sorted(p.name for p in labels_dir.iterdir() if not p.name.startswith("."))
    if not names:
        raise PeerError(f"no label files in {labels_dir}")
    return ".nii.gz" if names[0].endswith(".nii.gz") else Path(names[0]).suffix


def nnunet_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net v2 wants ``{name: value}``; v1-style ``{"0": "background"}`` is inverted."""
    if all(isinstance(v, str) for v in labels.values()):
        return {name: int(value) for value, name in labels.items()}
    return dict(labels)


def nnunet_dataset_json(meta: dict[str, Any], name: str, cases: int, ending: str) -> dict:
    """dataset.json with the keys nnU-Net v2 reads; v1's ``modality``/``training`` lists
    are converted or dropped (they would point at the source tree's paths)."""
    channels = meta.get("channel_names") or meta.get("modality")
    if not channels or "labels" not in meta:
        raise PeerError("dataset.json needs channel_names (or modality) and labels")
    return {
        "name": name,
        "channel_names": {str(k): str(v) for k, v in channels.items()},
        "labels": nnunet_labels(meta["labels"]),
        "numTraining": cases,
        "file_ending": ending,
    }


def case_ids(folder: Path, suffix: str) -> list[str]:
    """Case ids of the files in ``folder`` named ``<case><suffix>``."""
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


def link_files(source: Path, target: Path, ending: str) -> None:
    """Symlink every ``*<ending>`` of ``source`` into ``target`` (no copies of images)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob(f"*{ending}")):
        link = target / path.name
        if link.is_symlink() or link.exists():
            if link.resolve() == path.resolve():
                continue
            link.unlink()
        link.symlink_to(path.resolve())


def write_raw_tree(raw_dir: Path, layout: Layout) -> dict[str, Any]:
    """``nnUNet_raw/DatasetNNN_<Name>`` from an autoseg raw folder.

    The set of cases is recorded in ``state/raw.json``: a work dir whose preprocessed
    data came from other cases would silently train on stale data, so that is an error.
    """
    meta = read_json(raw_dir / "dataset.json")
    ending = file_ending(meta, raw_dir / "labelsTr")
    cases = case_ids(raw_dir / "labelsTr", ending)
    if not cases:
        raise PeerError(f"no training cases in {raw_dir / 'labelsTr'}")
    record = {"source": str(raw_dir.resolve()), "dataset": layout.dataset, "cases": cases}
    marker = layout.state / "raw.json"
    if marker.exists() and read_json(marker) != record:
        raise PeerError(
            f"{layout.work_dir} was prepared from other data ({marker}); use another --work-dir"
        )
    _check_dataset_id(layout)
    target = layout.raw / layout.dataset
    link_files(raw_dir / "imagesTr", target / "imagesTr", ending)
    link_files(raw_dir / "labelsTr", target / "labelsTr", ending)
    dataset_json = nnunet_dataset_json(meta, layout.dataset.split("_", 1)[1], len(cases), ending)
    atomic_write_json(target / "dataset.json", dataset_json)
    atomic_write_json(marker, record)
    return dataset_json


def dataset_name(raw_dir: Path) -> str:
    """dataset.json's name (else the folder's), reduced to what nnU-Net's
    ``DatasetNNN_<Name>`` folder names allow."""
    name = read_json(raw_dir / "dataset.json").get("name") or raw_dir.name
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in str(name))


def _check_dataset_id(layout: Layout) -> None:
    """nnU-Net resolves a numeric id by globbing; two datasets with one id break it."""
    prefix = layout.dataset.split("_", 1)[0] + "_"
    for folder in (layout.raw, layout.preprocessed):
        for other in folder.glob(prefix + "*") if folder.exists() else []:
            if other.name != layout.dataset:
                raise PeerError(f"{other} already uses this dataset id; pass --dataset-id")


# --- running nnU-Net ---------------------------------------------------------------------


def nnunet_env(layout: Layout, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every nnU-Net subprocess: its three folders in the work dir
    (nnU-Net reads them at import), unbuffered output so log lines carry real times."""
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(layout.raw),
        nnUNet_preprocessed=str(layout.preprocessed),
        nnUNet_results=str(layout.results),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def run_logged(
    command: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    on_line: Callable[[float, str], None] | None = None,
) -> float:
    """Run ``command``, its output into ``log_path``; returns its wall seconds.

    ``on_line(seconds_since_start, line)`` sees every line as it arrives (prediction
    timing reads nnU-Net's per-case lines). The child is terminated if this process is
    interrupted, so no training is left running on the shared CPU.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        process = subprocess.Popen(
            list(command),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                handle.write(line)
                if on_line is not None:
                    on_line(time.monotonic() - started, line.rstrip("\n"))
            code = process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    if code != 0:
        tail = log_path.read_text().splitlines()[-LOG_TAIL_LINES:]
        raise PeerError(f"{command[0]} exited with {code}; log {log_path}:\n" + "\n".join(tail))
    return time.monotonic() - started


def nnunet_tool(nnunet_python: Path, name: str) -> str:
    """An nnU-Net entry point of the venv whose python is ``nnunet_python``."""
    tool = nnunet_python.parent / name
    if not tool.exists():
        raise PeerError(f"{tool} not found: is nnU-Net v2 installed in that venv?")
    return str(tool)


def nnunet_versions(nnunet_python: Path) -> dict[str, str]:
    output = subprocess.run(
        [str(nnunet_python), "-c", VERSIONS_SNIPPET], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


# --- step 2: plans -----------------------------------------------------------------------


def base_plans_name(gpu_memory_target: float, spacing: Sequence[float] | None) -> str:
    """A plans name per planner setting, so nnU-Net's default plans stay untouched and
    settings never overwrite one another's preprocessed data."""
    name = f"nnUNetPlans_cpu{_tag(gpu_memory_target)}GB"
    if spacing is not None:
        name += "_sp" + "x".join(_tag(s) for s in spacing)
    return name


def edited_plans_name(base: str, patch: Sequence[int] | None, batch: int | None) -> str:
    name = base
    if patch is not None:
        name += "_p" + "x".join(str(p) for p in patch)
    if batch is not None:
        name += f"_b{batch}"
    return name


def plan_and_preprocess(
    nnunet_python: Path,
    layout: Layout,
    plans: str,
    gpu_memory_target: float,
    spacing: Sequence[float] | None,
    processes: int,
) -> dict[str, Any]:
    """nnU-Net's fingerprint, planner and preprocessing for 3d_fullres at a small memory
    target; skipped when ``state/plan_<plans>.json`` says it finished."""
    marker = layout.state / f"plan_{plans}.json"
    if marker.exists():
        return read_json(marker)
    command = [
        nnunet_tool(nnunet_python, "nnUNetv2_plan_and_preprocess"),
        "-d",
        layout.dataset_id,
        "-c",
        CONFIGURATION,
        "-gpu_memory_target",
        f"{gpu_memory_target:g}",
        "-overwrite_plans_name",
        plans,
        "-np",
        str(processes),
        "-npfp",
        str(processes),
        "--verify_dataset_integrity",
        "--no_pbar",
    ]
    if spacing is not None:
        command += ["-overwrite_target_spacing", *(f"{float(s)}" for s in spacing)]
    log(f"planning and preprocessing ({plans}) ...")
    seconds = run_logged(command, nnunet_env(layout), layout.state / f"plan_{plans}.log")
    record = {"command": command, "seconds": seconds}
    atomic_write_json(marker, record)
    log(f"planned and preprocessed in {seconds:.0f} s")
    return record


def describe_plans(
    nnunet_python: Path,
    layout: Layout,
    plans_file: Path,
    patch: Sequence[int] | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """The 3d_fullres configuration of ``plans_file`` (with ``patch``/``batch`` applied by
    nnU-Net's own topology rule) and nnU-Net's memory estimate for it."""
    args = {
        "dataset": layout.dataset,
        "plans_file": str(plans_file),
        "configuration": CONFIGURATION,
        "patch": None if patch is None else list(patch),
        "batch": batch,
    }
    command = [str(nnunet_python), "-c", PLANS_SNIPPET, json.dumps(args)]
    result = subprocess.run(command, env=nnunet_env(layout), capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PLANS_JSON ")]
    if result.returncode != 0 or not lines:
        raise PeerError(f"reading plans failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return json.loads(lines[-1][len("PLANS_JSON ") :])


def write_edited_plans(
    nnunet_python: Path,
    layout: Layout,
    base: str,
    patch: Sequence[int] | None,
    batch: int | None,
) -> None:
    """``<edited>.json`` beside the base plans: same data_identifier (so the same
    preprocessed data; patch and batch are training-time choices in nnU-Net), the new
    patch, its topology and batch. Everything else (loss settings such as
    ``batch_dice``, normalisation) stays the base plans'. Skipped when the file exists."""
    if layout.plans_file.exists():
        return
    base_file = layout.preprocessed / layout.dataset / f"{base}.json"
    edited = describe_plans(nnunet_python, layout, base_file, patch, batch)["configuration"]
    plans = read_json(base_file)
    plans["plans_name"] = layout.plans
    plans["configurations"] = {CONFIGURATION: edited}  # other configurations: not trained
    atomic_write_json(layout.plans_file, plans)
    if patch is not None and list(edited["patch_size"]) != list(patch):
        log(
            f"patch {list(patch)} padded to {edited['patch_size']}: nnU-Net's patches are "
            "multiples of the network's total stride per axis"
        )
    log(f"plans {layout.plans}: patch {edited['patch_size']}, batch {edited['batch_size']}")


def plans_summary(plans: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """What the comparison needs to know about nnU-Net's plan, in its own axis order."""
    config = description["configuration"]
    arch = config["architecture"]["arch_kwargs"]
    return {
        "identifier": plans["plans_name"],
        "configuration": CONFIGURATION,
        "patch_size": config["patch_size"],
        "batch_size": config["batch_size"],
        "batch_dice": config.get("batch_dice"),
        "spacing": config["spacing"],
        "median_image_size_in_voxels": config["median_image_size_in_voxels"],
        "transpose_forward": plans["transpose_forward"],
        "n_stages": arch["n_stages"],
        "features_per_stage": arch["features_per_stage"],
        "strides": arch["strides"],
        "kernel_sizes": arch["kernel_sizes"],
        "normalization_schemes": config["normalization_schemes"],
        "memory_estimate_gb": description["memory_estimate_gb"],
    }


# --- step 3: training --------------------------------------------------------------------


def install_trainer(nnunet_python: Path) -> Path:
    """Copy the budget trainer into nnU-Net's trainer package, where its lookup finds it.

    The copy goes to the top of ``nnunetv2/training/nnUNetTrainer/`` on purpose: the
    lookup imports that folder's modules before any subpackage, and in this venv the
    ``primus`` subpackage cannot be imported (timm needs torchvision, which is not
    installed), so the lookup of any class not found above it fails, including one in a
    ``nnUNet_extTrainer`` folder, which is only searched afterwards. Rewritten only when
    the file differs; returns where it is.
    """
    code = "import nnunetv2.training.nnUNetTrainer as m; print(m.__path__[0])"
    found = subprocess.run(
        [str(nnunet_python), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = Path(found) / TRAINER_FILE.name
    if not target.exists() or target.read_bytes() != TRAINER_FILE.read_bytes():
        temp = target.with_name(target.name + ".tmp")
        shutil.copyfile(TRAINER_FILE, temp)
        os.replace(temp, target)
        log(f"installed {TRAINER_NAME}: copied {TRAINER_FILE.name} to {target}")
    return target


def train(
    nnunet_python: Path,
    layout: Layout,
    da_workers: int | None,
    final_validation: bool,
) -> dict[str, Any]:
    """Fold ``all`` of 3d_fullres for ``layout.minutes``; skipped when the final
    checkpoint and the trainer's budget report exist. An unfinished fold folder is
    removed first: its minutes cannot be continued in another process."""
    report_path = layout.fold_dir / BUDGET_REPORT
    marker = layout.run_dir / "train.json"
    if report_path.exists() and (layout.fold_dir / CHECKPOINT).exists() and marker.exists():
        return {**read_json(marker), "report": read_json(report_path)}
    if layout.fold_dir.exists():
        log(f"removing unfinished training {layout.fold_dir}")
        shutil.rmtree(layout.fold_dir)
    clear_predictions(layout)  # they would belong to another model
    command = [
        nnunet_tool(nnunet_python, "nnUNetv2_train"),
        layout.dataset_id,
        CONFIGURATION,
        FOLD,
        "-tr",
        TRAINER_NAME,
        "-p",
        layout.plans,
        "-device",
        "cpu",
    ]
    extra = {
        "NNUNET_BUDGET_MINUTES": f"{layout.minutes:g}",
        "NNUNET_BUDGET_FINAL_VALIDATION": "1" if final_validation else "0",
    }
    if da_workers is not None:
        extra["nnUNet_n_proc_DA"] = str(da_workers)
    log(f"training {layout.plans} for {layout.minutes:g} min ...")
    seconds = run_logged(command, nnunet_env(layout, extra), layout.run_dir / "train.log")
    report = read_json(report_path)
    record = {"command": command, "wall_seconds": seconds}
    atomic_write_json(marker, record)
    log(
        f"trained {report['epochs']} epochs, {report['iterations']} iterations in "
        f"{report['train_minutes']:.2f} min ({seconds / 60:.2f} min wall)"
    )
    return {**record, "report": report}


# --- step 4: prediction ------------------------------------------------------------------


def clear_predictions(layout: Layout) -> None:
    """Remove this run's predictions and their records, with and without TTA."""
    for tta in (True, False):
        other = Layout(layout.work_dir, layout.dataset, layout.plans, layout.minutes, tta)
        other.predict_record.unlink(missing_ok=True)
        if other.predictions.exists():
            shutil.rmtree(other.predictions)


class CaseTimer:
    """Per-case network seconds from nnU-Net's ``Predicting <file>:`` and ``done with
    <file>`` lines (sliding window with TTA; reading, preprocessing and export run in
    its worker processes alongside)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, at: float, line: str) -> None:
        text = line.strip()
        if text.startswith("Predicting ") and text.endswith(":"):
            self.started[text[len("Predicting ") : -1]] = at
        elif text.startswith("done with "):
            name = text[len("done with ") :]
            if name in self.started:
                self.seconds[name] = at - self.started[name]


def predict(
    nnunet_python: Path,
    layout: Layout,
    test_images: Path,
    ending: str,
    processes: int,
) -> dict[str, Any]:
    """nnU-Net's prediction of the test images with the final checkpoint and its default
    mirroring TTA (or none: ``layout.tta``); skipped when the step's record exists and
    every case has its output."""
    cases = case_ids(test_images, "_0000" + ending)
    if not cases:
        raise PeerError(f"no test images named <case>_0000{ending} in {test_images}")
    marker = layout.predict_record
    outputs = [layout.predictions / f"{case}{ending}" for case in cases]
    if marker.exists() and all(p.exists() for p in outputs):
        return read_json(marker)
    if layout.predictions.exists():
        shutil.rmtree(layout.predictions)  # partial: predict all again, for the timing
    workers = str(max(1, processes // 2))
    command = [
        nnunet_tool(nnunet_python, "nnUNetv2_predict"),
        "-i",
        str(test_images),
        "-o",
        str(layout.predictions),
        "-d",
        layout.dataset_id,
        "-c",
        CONFIGURATION,
        "-f",
        FOLD,
        "-tr",
        TRAINER_NAME,
        "-p",
        layout.plans,
        "-chk",
        CHECKPOINT,
        "-device",
        "cpu",
        "-npp",
        workers,
        "-nps",
        workers,
        "--disable_progress_bar",
    ]
    if not layout.tta:
        command.append("--disable_tta")
    timer = CaseTimer()
    log(f"predicting {len(cases)} test cases ...")
    seconds = run_logged(command, nnunet_env(layout), layout.run_dir / "predict.log", on_line=timer)
    missing = [str(p) for p in outputs if not p.exists()]
    if missing:
        raise PeerError(f"nnUNetv2_predict wrote no output for {missing}")
    per_case = list(timer.seconds.values())
    record = {
        "command": command,
        "folder": str(layout.predictions),
        "cases": len(cases),
        "tta": "nnU-Net default (mirroring)" if layout.tta else "none (--disable_tta)",
        "checkpoint": CHECKPOINT,
        "wall_seconds": seconds,
        "wall_seconds_per_case": seconds / len(cases),
        "network_seconds_per_case": timer.seconds,
        "network_seconds_per_case_median": statistics.median(per_case) if per_case else None,
    }
    atomic_write_json(marker, record)
    log(f"predicted in {seconds:.0f} s ({seconds / len(cases):.1f} s/case wall)")
    return record


# --- all steps ---------------------------------------------------------------------------


def run_peer(
    raw_dir: str | Path,
    test_images_dir: str | Path,
    work_dir: str | Path,
    minutes: float,
    *,
    nnunet_python: str | Path = DEFAULT_NNUNET_PYTHON,
    dataset_id: int = 501,
    gpu_memory_target: float = 0.25,
    patch: Sequence[int] | None = None,
    batch: int | None = None,
    spacing: Sequence[float] | None = None,
    processes: int = 2,
    da_workers: int | None = None,
    final_validation: bool = False,
    tta: bool = True,
) -> dict[str, Any]:
    """Plan, train for ``minutes`` and predict with nnU-Net v2 on the CPU; the summary.

    Args:
        raw_dir: autoseg raw dataset (nnU-Net v2 raw layout) to train on.
        test_images_dir: folder of ``<case>_0000<ending>`` test images.
        work_dir: nnU-Net's raw/preprocessed/results folders and the runs; shared by all
            budgets of one dataset (planning happens once).
        minutes: training budget in minutes.
        nnunet_python: python of the venv holding nnU-Net v2.
        dataset_id: nnU-Net's three-digit dataset id in ``work_dir``.
        gpu_memory_target: nnU-Net planner's memory target in GB (its default is 8).
        patch: replace the planned patch (nnU-Net's plans axis order, e.g. autoseg's).
        batch: replace the planned batch size.
        spacing: nnU-Net's ``-overwrite_target_spacing`` (plans axis order), in mm.
        processes: nnU-Net's processes for fingerprint, preprocessing and prediction.
        da_workers: nnU-Net's augmentation workers (``nnUNet_n_proc_DA``); None: its
            default (at most the CPU count).
        final_validation: run nnU-Net's full validation after training (outside the
            budget; off by default).
        tta: nnU-Net's default mirroring TTA at prediction (8 passes per tile in 3D);
            False predicts once per tile, ~8x faster.

    Returns:
        The summary also written to ``<run dir>/summary.json``.
    """
    raw_dir, test_images = Path(raw_dir), Path(test_images_dir)
    work, python = Path(work_dir).resolve(), Path(nnunet_python)
    if not 0 < dataset_id < 1000:
        raise PeerError("dataset_id must have three digits")
    dataset = f"Dataset{dataset_id:03d}_{dataset_name(raw_dir)}"
    base = base_plans_name(gpu_memory_target, spacing)
    plans = edited_plans_name(base, patch, batch)
    layout = Layout(work, dataset, plans, float(minutes), tta)

    dataset_json = write_raw_tree(raw_dir, layout)
    planning = plan_and_preprocess(python, layout, base, gpu_memory_target, spacing, processes)
    if plans != base:
        write_edited_plans(python, layout, base, patch, batch)
    description = describe_plans(python, layout, layout.plans_file)
    installed = install_trainer(python)
    training = train(python, layout, da_workers, final_validation)
    prediction = predict(python, layout, test_images, dataset_json["file_ending"], processes)

    report = training["report"]
    summary = {
        "peer": "nnU-Net v2",
        # headline figures at the top, the names benchmarks/learning_curve.py reads
        "predictions": prediction["folder"],
        "epochs": report["epochs"],
        "iterations": report["iterations"],
        "train_minutes": report["train_minutes"],
        "seconds_per_iteration": report["step_seconds_median"],
        "predict_seconds_per_case": prediction["wall_seconds_per_case"],
        "versions": nnunet_versions(python),
        "dataset": dataset,
        "raw_dir": str(raw_dir.resolve()),
        "test_images_dir": str(test_images.resolve()),
        "budget_minutes": float(minutes),
        "gpu_memory_target_gb": gpu_memory_target,
        "plans": plans_summary(read_json(layout.plans_file), description),
        "planning_seconds": planning["seconds"],
        "training": {
            "trainer": TRAINER_NAME,
            "trainer_file": str(installed),
            "minutes": report["train_minutes"],
            "wall_minutes": training["wall_seconds"] / 60.0,
            "stop_reason": report["stop_reason"],
            "epochs": report["epochs"],
            "iterations": report["iterations"],
            "iterations_per_epoch": report["iterations_per_epoch"],
            "val_iterations_per_epoch": report["val_iterations_per_epoch"],
            "epoch_seconds_median": report["epoch_seconds_median"],
            "seconds_per_iteration_median": report["step_seconds_median"],
            "final_lr": report["final_lr"],
            "final_ema_pseudo_dice": (report["ema_pseudo_dice"] or [None])[-1],
            "torch_threads": report["torch_threads"],
            "fold_dir": str(layout.fold_dir),
        },
        "prediction": {k: v for k, v in prediction.items() if k != "command"},
        "commands": {
            "plan": planning["command"],
            "train": training["command"],
            "predict": prediction["command"],
        },
    }
    atomic_write_json(layout.summary, summary)
    log(f"summary: {layout.summary}")
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="nnU-Net v2 trained for a CPU time budget (autoseg's equal-budget peer)."
    )
    parser.add_argument("raw_dir", type=Path, help="autoseg raw dataset (nnU-Net raw layout)")
    parser.add_argument("test_images", type=Path, help="folder of <case>_0000 test images")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument(
        "--minutes",
        type=float,
        nargs="+",
        required=True,
        help="training budget(s) in minutes; one run per budget",
    )
    parser.add_argument("--nnunet-python", type=Path, default=DEFAULT_NNUNET_PYTHON)
    parser.add_argument("--dataset-id", type=int, default=501)
    parser.add_argument(
        "--gpu-memory-target",
        type=float,
        default=0.25,
        help="nnU-Net planner's memory target in GB (default 0.25: on 2 mm ATLAS-like data "
        "this plans autoseg's 40x48x40 patch, batch 2; nnU-Net's own default: 8)",
    )
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="replace the planned patch (nnU-Net's plans axis order)",
    )
    parser.add_argument("--batch", type=int, help="replace the planned batch size")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="nnU-Net's -overwrite_target_spacing in mm",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="nnU-Net processes for fingerprint/preprocessing/prediction",
    )
    parser.add_argument("--da-workers", type=int, help="nnUNet_n_proc_DA (default: nnU-Net's)")
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="predict without nnU-Net's mirroring TTA (~8x faster on the CPU)",
    )
    parser.add_argument(
        "--final-validation",
        action="store_true",
        help="also run nnU-Net's full validation (outside the budget)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for minutes in args.minutes:
        try:
            summary = run_peer(
                args.raw_dir,
                args.test_images,
                args.work_dir,
                minutes,
                nnunet_python=args.nnunet_python,
                dataset_id=args.dataset_id,
                gpu_memory_target=args.gpu_memory_target,
                patch=args.patch,
                batch=args.batch,
                spacing=args.spacing,
                processes=args.processes,
                da_workers=args.da_workers,
                final_validation=args.final_validation,
                tta=not args.no_tta,
            )
        except PeerError as error:
            print(f"nnunet_peer: {error}", file=sys.stderr)
            return 1
        training, prediction = summary["training"], summary["prediction"]
        print(
            json.dumps(
                {
                    "minutes": minutes,
                    "epochs": training["epochs"],
                    "iterations": training["iterations"],
                    "s_per_iteration": training["seconds_per_iteration_median"],
                    "s_per_case": prediction["wall_seconds_per_case"],
                    "predictions": prediction["folder"],
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
