"""CPU seconds per batch at GPU scale: how many loader cores one GPU needs never to wait.

Usage::

    python benchmarks/loader_gpu_scale.py --work-dir /tmp/gpu_scale [--cases 8] \
        [--batches 30] [--patch 112 144 112] [--batch 2] [--gpu-step-seconds 0.25] \
        [--device-augment auto] [--skip-nnunet] [--tsv out.tsv]

The 1 mm ``3d_hybrid`` plan of an 8 GB GPU (patch about 112x144x112, batch 2) on
synthetic 1 mm ATLAS-like heads (``synthesize("atlas", size="full")``), ONE loader
worker, three settings:

(a) ``autoseg_cpu``: autoseg's loader with its CPU augmentation (the default off CUDA);
(b) ``autoseg_device``: autoseg's loader when augmentation runs on the device
    (``--augment-on device``): the worker only reads, cuts the larger box and draws the
    parameters;
(c) ``nnunet``: nnU-Net v2's training pipeline (its ``nnUNetDataLoader`` and default
    ``get_training_transforms``, single process) on the same cases, converted to nnU-Net
    raw and preprocessed by nnU-Net itself (``benchmarks/nnunet_peer.py``), at the same
    patch and batch; it runs in nnU-Net's venv (``benchmarks/nnunet_loader_timing.py``).

Printed: the median seconds per batch of each setting, the ratios (a)/(c) (target <= 1.0)
and (b)/(c) (target <= 0.2), and the loader cores one GPU needs never to wait, ``CPU s per
batch / GPU step s``, with ``--gpu-step-seconds`` an ASSUMED H100 step time for this plan
until it is measured. ``--device-augment`` also times the device path's own work per batch
(``cuda`` when available under ``auto``): it adds to the GPU step. Every preparation step
is skipped when its result is already under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from autoseg.core.atomic import atomic_path
from autoseg.data.convert import convert
from autoseg.data.layout import RawDataset
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.cache import cached_case_ids
from autoseg.preprocessing.dataset import cache_folder, preprocess_dataset
from autoseg.synthetic.generate import synthesize
from autoseg.training.device_augmentation import augment
from autoseg.training.loader import make_training_loader

sys.path.insert(0, str(Path(__file__).parent))
import nnunet_peer as peer

NNUNET_TIMING = Path(__file__).with_name("nnunet_loader_timing.py")
NNUNET_DATASET_ID = 611
NNUNET_GPU_MEMORY_GB = 8.0
TARGETS = {"autoseg_cpu": 1.0, "autoseg_device": 0.2}  # share of nnU-Net's seconds


def spec(spacing_mm: float) -> PreprocessingSpec:
    return PreprocessingSpec(
        spacing_mm=(spacing_mm,) * 3, normalization=(ChannelNormalization("zscore_brain"),)
    )


def build_cache(work: Path, cases: int, size: str, spacing_mm: float) -> tuple[Path, list[str]]:
    """Synthesize, convert and preprocess with autoseg (each step skipped when done)."""
    plan = spec(spacing_mm)
    folder = cache_folder(work / "preprocessed" / "ATLAS", plan)
    if len(cached_case_ids(folder, plan.spec_hash)) >= cases:
        return folder, cached_case_ids(folder, plan.spec_hash)[:cases]
    if not (work / "raw" / "ATLAS" / "dataset.json").is_file():
        synthesize("atlas", work / "source", cases, size=size, progress=False, empty_fraction=0)
        convert("atlas", work / "source", work / "raw" / "ATLAS", progress=False)
    raw = RawDataset.open(work / "raw" / "ATLAS")
    preprocess_dataset(raw, work / "preprocessed" / "ATLAS", plan, num_processes=1, progress=False)
    return folder, cached_case_ids(folder, plan.spec_hash)[:cases]


def intervals(loader: Any, batches: int, warmup: int) -> list[float]:
    """Seconds between consecutive batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(loader)
    stamps = [time.perf_counter()]
    for _ in range(batches):
        next(loader)
        stamps.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(stamps)]


def time_autoseg(
    folder: Path, ids: list[str], patch: Sequence[int], batch: int, on_device: bool,
    batches: int, warmup: int,
) -> dict[str, Any]:  # fmt: skip
    """One worker process: its seconds per batch are the CPU seconds a batch costs (the
    main process only waits for it)."""
    with make_training_loader(folder, ids, patch, batch, num_workers=1, seed=0,
                              augment_on_device=on_device) as loader:  # fmt: skip
        seconds = intervals(loader, batches, warmup)
        shape = tuple(next(loader)["data"].shape)
    return {"median_s": statistics.median(seconds), "seconds": seconds, "worker_output": shape}


def time_device_path(
    folder: Path, ids: list[str], patch: Sequence[int], batch: int, device: torch.device,
    batches: int,
) -> dict[str, Any]:  # fmt: skip
    """The device path's own seconds per batch (resampling, intensity, mirroring) on
    ``device``, excluding the copy: what augmentation adds to each GPU step."""
    seconds = []
    with make_training_loader(folder, ids, patch, batch, num_workers=0, seed=1,
                              augment_on_device=True) as loader:  # fmt: skip
        for index, raw in enumerate(itertools.islice(loader, batches + 2)):
            data, target = raw["data"].to(device), raw["target"].to(device)
            _synchronise(device)
            started = time.perf_counter()
            augment(data, target, raw["augmentation"])
            _synchronise(device)
            if index >= 2:  # the first calls warm up kernels and allocator
                seconds.append(time.perf_counter() - started)
    return {"median_s": statistics.median(seconds), "seconds": seconds, "device": str(device)}


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare_nnunet(
    python: Path, work: Path, patch: Sequence[int], batch: int, spacing_mm: float
) -> peer.Layout:
    """nnU-Net raw from autoseg's raw folder, nnU-Net's planner and preprocessing at
    ``spacing_mm``, and plans edited to the same patch and batch (nnunet_peer's steps)."""
    raw_dir = work / "raw" / "ATLAS"
    dataset = f"Dataset{NNUNET_DATASET_ID:03d}_{peer.dataset_name(raw_dir)}"
    base = peer.base_plans_name(NNUNET_GPU_MEMORY_GB, (spacing_mm,) * 3)
    plans = peer.edited_plans_name(base, patch, batch)
    layout = peer.Layout(work / "nnunet", dataset, plans, 0.0)
    peer.write_raw_tree(raw_dir, layout)
    peer.plan_and_preprocess(python, layout, base, NNUNET_GPU_MEMORY_GB, (spacing_mm,) * 3, 1)
    peer.write_edited_plans(python, layout, base, patch, batch)
    return layout


def time_nnunet(
    python: Path, work: Path, patch: Sequence[int], batch: int, spacing_mm: float,
    batches: int, warmup: int,
) -> dict[str, Any]:  # fmt: skip
    """nnU-Net's training pipeline in one process, run by nnU-Net's python."""
    layout = prepare_nnunet(python, work, patch, batch, spacing_mm)
    output = layout.work_dir / "loader_timing.json"
    args = {
        "plans_file": str(layout.plans_file),
        "dataset_json": str(layout.preprocessed / layout.dataset / "dataset.json"),
        "configuration": peer.CONFIGURATION, "batches": batches, "warmup": warmup,
        "patch_size": list(patch), "batch_size": batch,
        "output": str(output),
    }  # fmt: skip
    args_file = layout.work_dir / "loader_timing_args.json"
    args_file.write_text(json.dumps(args))
    env = peer.nnunet_env(layout, {"OMP_NUM_THREADS": "1", "nnUNet_n_proc_DA": "0"})
    result = subprocess.run([str(python), str(NNUNET_TIMING), str(args_file)], env=env,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise peer.PeerError(f"nnU-Net loader timing failed:\n{result.stderr[-3000:]}")
    return json.loads(output.read_text())


def rows(results: dict[str, dict[str, Any]], gpu_step_s: float) -> list[dict[str, Any]]:
    """One row per setting: median s/batch, share of nnU-Net's, cores a GPU needs."""
    reference = results.get("nnunet", {}).get("median_s")
    out = []
    for name, result in results.items():
        seconds = result["median_s"]
        ratio = seconds / reference if reference and name.startswith("autoseg_") else None
        out.append({
            "setting": name, "median_s_per_batch": seconds,
            "ratio_to_nnunet": ratio, "target_ratio": TARGETS.get(name),
            "cores_per_gpu": seconds / gpu_step_s if name != "device_path" else None,
        })  # fmt: skip
    return out


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def write_tsv(path: Path, table: list[dict[str, Any]], context: dict[str, Any]) -> None:
    """The table with the run's settings repeated on every row (atomic write)."""
    columns = [*table[0], *context]
    lines = ["\t".join(columns)]
    lines += ["\t".join(_cell({**row, **context}[c]) for c in columns) for row in table]
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")


def report(table: list[dict[str, Any]], gpu_step_s: float) -> None:
    print(f"{'setting':<16} {'s/batch':>9} {'/ nnU-Net':>10} {'target':>7} {'cores/GPU':>10}")
    for row in table:
        print(f"{row['setting']:<16} {row['median_s_per_batch']:>9.3f} "
              f"{_cell(row['ratio_to_nnunet']):>10} {_cell(row['target_ratio']):>7} "
              f"{_cell(row['cores_per_gpu']):>10}")  # fmt: skip
    print(f"cores/GPU = CPU s per batch / GPU step s, with an ASSUMED H100 step of "
          f"{gpu_step_s:g} s (--gpu-step-seconds) until measured; device_path is GPU time "
          "that adds to the step.")  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", default="full", help="synthetic size (full: 1 mm)")
    parser.add_argument("--spacing-mm", type=float, default=1.0)
    parser.add_argument("--patch", type=int, nargs=3, default=[112, 144, 112])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gpu-step-seconds", type=float, default=0.25,
                        help="ASSUMED H100 step time of this plan (until measured)")  # fmt: skip
    parser.add_argument("--device-augment", default="auto",
                        help="time the device path on: auto (cuda if any), cuda, cpu, "
                             "none")  # fmt: skip
    parser.add_argument("--nnunet-python", type=Path, default=peer.DEFAULT_NNUNET_PYTHON)
    parser.add_argument("--skip-nnunet", action="store_true")
    parser.add_argument("--tsv", type=Path, default=None, help="default: WORK/loader_gpu_scale.tsv")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_scale_"))).resolve()
    folder, ids = build_cache(work, args.cases, args.size, args.spacing_mm)
    print(f"cache: {folder} ({len(ids)} cases), patch {args.patch}, batch {args.batch}, 1 worker")
    results: dict[str, dict[str, Any]] = {}
    for name, on_device in (("autoseg_cpu", False), ("autoseg_device", True)):
        results[name] = time_autoseg(folder, ids, args.patch, args.batch, on_device,
                                     args.batches, args.warmup)  # fmt: skip
        print(f"{name}: {results[name]['median_s']:.3f} s/batch "
              f"(worker output {results[name]['worker_output']})")  # fmt: skip
    if not args.skip_nnunet:
        results["nnunet"] = time_nnunet(args.nnunet_python, work, args.patch, args.batch,
                                        args.spacing_mm, args.batches, args.warmup)  # fmt: skip
        print(
            f"nnunet: {results['nnunet']['median_s']:.3f} s/batch "
            f"(patch {results['nnunet']['patch_size']}, batch {results['nnunet']['batch_size']})"
        )
    choice = args.device_augment
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "none"
    if choice != "none":
        results["device_path"] = time_device_path(folder, ids, args.patch, args.batch,
                                                  torch.device(choice), args.batches)  # fmt: skip
    table = rows(results, args.gpu_step_seconds)
    report(table, args.gpu_step_seconds)
    context = {"patch": "x".join(map(str, args.patch)), "batch": args.batch,
               "spacing_mm": args.spacing_mm, "cases": len(ids), "batches": args.batches,
               "gpu_step_s_assumed": args.gpu_step_seconds}  # fmt: skip
    tsv = args.tsv or work / "loader_gpu_scale.tsv"
    write_tsv(tsv, table, context)
    print(f"wrote {tsv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
