"""Seconds per case of CPU prediction: autoseg's configurations against nnU-Net v2.

Usage: ``python benchmarks/predict_speed.py [--cases 2] [--full] [--configs ...]
[--nnunet-python /work/nnunet_venv/bin/python] [--work-dir DIR]``

Writes ``--cases`` synthetic ATLAS-like T1w cases at 2 mm (and with ``--full`` at 1 mm),
converts and plans them with autoseg's own planner for a CPU (``plan_dataset``), and times
one untrained network per configuration at the plans' patch size (speed does not depend
on the weights) through the whole per-case path a user runs: read, preprocess, sliding
window (step 0.5, Gaussian), revert, write. Each case is one ``predict_folder`` call, so
the median is per case; with and without mirroring TTA, one fold.

With ``--nnunet-python``, the same raw folder is planned by nnU-Net
(``nnUNetv2_plan_and_preprocess --no_pp -c 3d_fullres``), a randomly initialised
3d_fullres network is saved as ``fold_0/checkpoint_final.pth`` in a results folder, and
``nnUNetPredictor.predict_single_npy_array`` (read with its own SimpleITK reader,
preprocess, sliding window, export to a file: per case, no worker pools) is timed on the
same cases, one fold, with and without TTA. Target: autoseg >= 2x faster per case at
equal TTA. Timings on a shared machine vary; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from autoseg.core.workspace import Workspace
from autoseg.data.convert import convert
from autoseg.data.layout import RawDataset
from autoseg.inference.folder_prediction import predict_folder
from autoseg.inference.settings import InferenceSettings
from autoseg.networks import build_network
from autoseg.planning.planner import plan_dataset
from autoseg.plans import load_plans
from autoseg.synthetic.generate import synthesize

NNUNET_SCRIPT = r"""
import json, os, statistics, subprocess, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
work, cases_json, tta_modes = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
os.environ.update(nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "pre"),
                  nnUNet_results=str(work / "res"))
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", "901",
                "-c", "3d_fullres", "--no_pp", "-npfp", "1"], check=True,
               stdout=subprocess.DEVNULL)
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
pre = work / "pre" / "Dataset901_Synth"
plans = load_json(pre / "nnUNetPlans.json")
dataset_json = load_json(pre / "dataset.json")
manager = PlansManager(plans)
config = manager.get_configuration("3d_fullres")
net = nnUNetTrainer.build_network_architecture(manager, config, 1, 2, False)
model_dir = work / "res" / "model"
(model_dir / "fold_0").mkdir(parents=True, exist_ok=True)
torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": (0, 1, 2)},
           model_dir / "fold_0" / "checkpoint_final.pth")
save_json(plans, model_dir / "plans.json")
save_json(dataset_json, model_dir / "dataset.json")
out = {"patch_size": config.patch_size, "spacing": config.spacing}
for tta in tta_modes:
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta == "1",
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), (0,), "checkpoint_final.pth")
    times = []
    for i, image in enumerate(json.loads(cases_json)):
        start = time.perf_counter()
        data, props = SimpleITKIO().read_images([image])
        predictor.predict_single_npy_array(data, props, None, str(work / f"out_{tta}_{i}"))
        times.append(time.perf_counter() - start)
    out[f"tta_{tta}"] = times
print("RESULT " + json.dumps(out))
"""


def prepare_dataset(work: Path, spacing_mm: float, cases: int) -> tuple[Workspace, str]:
    """Synthetic ATLAS-like cases in the raw layout, planned by autoseg for a CPU."""
    name = f"Synth{int(spacing_mm)}mm"
    workspace = Workspace.under(work / "autoseg")
    raw = workspace.raw / name
    if not (raw / "dataset.json").is_file():
        source = work / f"source_{name}"
        synthesize("atlas", source, cases, seed=0, spacing_mm=(spacing_mm,) * 3, progress=False)
        convert("atlas", source, raw, progress=False)
    plan_dataset(workspace, name, device="cpu", progress=False)
    return workspace, name


def time_autoseg(
    workspace: Workspace, name: str, configuration: str, tta: bool, out: Path
) -> list[float]:
    """Seconds per case of one untrained network of ``configuration`` (read to write)."""
    entry = load_plans(workspace.preprocessed / name / "plans.json").configuration(configuration)
    network = build_network(entry.network.to_json()).eval()
    num_classes = int(entry.network.kwargs["num_classes"])
    settings = InferenceSettings.from_configuration(entry, num_classes, device="cpu", tta=tta)
    spec = entry.preprocessing_spec
    times = []
    for case in RawDataset.open(workspace.raw / name).training_cases():
        start = time.perf_counter()
        predict_folder([(case.case_id, list(case.image_files))], out, [network], spec,
                       settings, overwrite=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    return times


def time_nnunet(python: str, workspace: Workspace, name: str, work: Path) -> dict:
    """nnU-Net's per-case seconds on the same raw files (see the module docstring)."""
    nnunet_work = work / f"nnunet_{name}"
    raw_root = nnunet_work / "nnUNet_raw"
    raw_root.mkdir(parents=True, exist_ok=True)
    link = raw_root / "Dataset901_Synth"
    if not link.exists():
        os.symlink((workspace.raw / name).resolve(), link)
    images = [str(c.image_files[0]) for c in RawDataset.open(workspace.raw / name).training_cases()]
    result = subprocess.run(
        [python, "-c", NNUNET_SCRIPT, str(nnunet_work), json.dumps(images), "0,1"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def row(label: str, patch: object, times: list[float]) -> str:
    return f"| {label} | {patch} | {statistics.median(times):.2f} | {len(times)} |"


def run(args: argparse.Namespace, work: Path) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("| model | patch | s/case (median) | cases |\n|---|---|---|---|")
    for spacing in [2.0, 1.0] if args.full else [2.0]:
        workspace, name = prepare_dataset(work, spacing, args.cases)
        plans = json.loads((workspace.preprocessed / name / "plans.json").read_text())
        for configuration in args.configs or sorted(plans["configurations"]):
            patch = plans["configurations"][configuration]["patch_size"]
            for tta in (False, True):
                times = time_autoseg(workspace, name, configuration, tta, work / "out")
                label = f"{spacing:g} mm autoseg {configuration} TTA {'on' if tta else 'off'}"
                print(row(label, patch, times), flush=True)
        if args.nnunet_python:
            result = time_nnunet(args.nnunet_python, workspace, name, work)
            for tta in ("0", "1"):
                label = f"{spacing:g} mm nnU-Net 3d_fullres TTA {'on' if tta == '1' else 'off'}"
                print(row(label, result["patch_size"], result[f"tta_{tta}"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also 1 mm volumes (slow)")
    parser.add_argument("--configs", nargs="*", help="configurations (default: all planned)")
    parser.add_argument("--nnunet-python", help="python of an environment with nnunetv2")
    parser.add_argument("--work-dir", type=Path, help="keep data and plans between runs")
    args = parser.parse_args()
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        run(args, args.work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="autoseg-predict-speed-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
