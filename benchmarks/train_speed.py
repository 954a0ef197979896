"""Seconds per training iteration of each configuration at its planned patch and batch,
the loader's batches/s alone, and (when given) nnU-Net's PlainConvUNet on the same data.

    python benchmarks/train_speed.py PREPROCESSED/ATLAS        # an existing plans.json
    python benchmarks/train_speed.py --synthetic /tmp/bench    # 2 mm synthetic ATLAS-like
    python benchmarks/train_speed.py PREPROCESSED/ATLAS --precisions fp32 bf16
    python benchmarks/train_speed.py PREPROCESSED/ATLAS \
        --nnunet-python /work/nnunet_venv/bin/python \
        --nnunet-plans nnUNet_preprocessed/Dataset001_X/nnUNetPlans.json

Each timing is the median of ``--iterations`` (20) steps after ``--warmup`` (3) steps, on
batches drawn in advance (so the trainer's figure excludes loading); the loader figure
times ``make_training_loader`` with its default workers and the plans' augmentation.
``--precisions`` times the steps once per autocast precision (``auto`` is what training
picks on this machine; ``bf16`` on a CPU is fast only with AMX, and a bf16 step that fails
the trainer's check (:mod:`autoseg.training.bf16_check`) prints why and shows nan).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.pipeline.fold_data import FoldData, load_fold
from autoseg.pipeline.fold_trainer import TrainOptions, build_trainer, settle_cpu_precision
from autoseg.training.speed import PRECISIONS, SpeedLevers
from autoseg.training.trainer import Trainer, amp_dtype

NNUNET_SNIPPET = """
import json, statistics, sys, time, torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
plans = json.load(open(sys.argv[1])); cfg = plans["configurations"][sys.argv[2]]
arch = cfg["architecture"]["arch_kwargs"]
net = PlainConvUNet(input_channels=int(sys.argv[3]), num_classes=2, deep_supervision=True,
    **{k: v for k, v in arch.items() if not k.startswith(("nonlin", "norm_op", "conv_op",
                                                          "dropout_op", "_kw"))},
    conv_op=torch.nn.Conv3d if len(cfg["patch_size"]) == 3 else torch.nn.Conv2d,
    norm_op=torch.nn.InstanceNorm3d if len(cfg["patch_size"]) == 3 else torch.nn.InstanceNorm2d,
    norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
    nonlin_kwargs={"inplace": True})
device = torch.device(sys.argv[4]); net.to(device)
opt = torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True)
x = torch.randn(cfg["batch_size"], int(sys.argv[3]), *cfg["patch_size"], device=device)
times = []
for i in range(int(sys.argv[5]) + int(sys.argv[6])):
    start = time.perf_counter(); opt.zero_grad()
    out = net(x); sum(o.float().mean() for o in out).backward(); opt.step()
    if device.type == "cuda": torch.cuda.synchronize()
    if i >= int(sys.argv[6]): times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def median_step_seconds(trainer: object, batches: list, warmup: int) -> float:
    """Median wall time of one training step over ``batches`` (first ``warmup`` skipped)."""
    times = []
    for index, batch in enumerate(batches):
        start = time.perf_counter()
        trainer.train_step(batch)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def forced_dtype(trainer: Trainer, data: FoldData, precision: str) -> torch.dtype | None:
    """The step's dtype under ``precision`` whatever the plan's ``amp``, through the same
    CPU bf16 check as training (so a step that would crash this process is not run).

    Raises:
        InvalidInputError: bf16 asked for where its step does not survive.
    """
    settings = replace(trainer.settings, amp=True, levers=SpeedLevers(precision=precision))
    settings = settle_cpu_precision(settings, data.config, trainer.network, trainer.device)
    return amp_dtype(trainer.device, settings.amp, settings.levers)


def time_configuration(
    workspace: Workspace, dataset: str, name: str, args: argparse.Namespace
) -> dict:
    """Trainer seconds/iteration (per precision) and loader batches/s of one configuration."""
    data = load_fold(workspace, dataset, name, 0)
    options = TrainOptions(device=args.device, num_workers=args.workers, progress=False)
    folder = Path(tempfile.mkdtemp(prefix="train_speed_"))
    trainer = build_trainer(workspace, data, 0, folder, options)
    loader = trainer.batches.for_epoch(0, 0)
    count = args.warmup + args.iterations
    start = time.perf_counter()
    batches = list(itertools.islice(loader, count))
    loader_rate = count / (time.perf_counter() - start)
    trainer.batches.close()
    planned, steps = trainer.dtype, {}
    for precision in args.precisions:
        try:
            dtype = planned if precision == "auto" else forced_dtype(trainer, data, precision)
        except InvalidInputError as error:  # a forced bf16 step that crashes this CPU
            print(error)
            steps[precision] = math.nan
            continue
        trainer.dtype = dtype
        steps[precision] = median_step_seconds(trainer, batches, args.warmup)
    return {"configuration": name, "patch": list(data.config.patch_size),
            "batch": data.config.batch_size, "s_per_iter": steps,
            "loader_batches_per_s": loader_rate}  # fmt: skip


def nnunet_seconds(args: argparse.Namespace, channels: int) -> float | None:
    """nnU-Net's PlainConvUNet step time from its plans, in its own Python."""
    if not (args.nnunet_python and args.nnunet_plans):
        return None
    command = [args.nnunet_python, "-c", NNUNET_SNIPPET, args.nnunet_plans,
               args.nnunet_configuration, str(channels), args.device if args.device != "auto"
               else "cpu", str(args.iterations), str(args.warmup)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        print(f"nnU-Net timing failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(result.stdout.strip().splitlines()[-1])


def synthetic_dataset(root: Path, cases: int) -> tuple[Workspace, str]:
    """A 2 mm synthetic ATLAS-like dataset, converted, planned and preprocessed."""
    from autoseg.data.convert import convert
    from autoseg.data.layout import RawDataset
    from autoseg.planning.planner import plan_dataset
    from autoseg.preprocessing.dataset import preprocess_dataset
    from autoseg.synthetic.generate import synthesize

    workspace = Workspace.under(root)
    synthesize("atlas", root / "source", cases, spacing_mm=(2.0, 2.0, 2.0), progress=False)
    convert("atlas", root / "source", workspace.raw / "ATLAS", progress=False)
    plans = plan_dataset(workspace, "ATLAS", progress=False)
    raw = RawDataset.open(workspace.raw / "ATLAS")
    for config in plans.configurations.values():
        preprocess_dataset(raw, workspace.preprocessed / "ATLAS", config.preprocessing_spec,
                           num_processes=2, progress=False)  # fmt: skip
    return workspace, "ATLAS"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preprocessed", nargs="?", help="preprocessed/<NAME> with plans.json")
    parser.add_argument("--synthetic", help="folder for a synthetic 2 mm ATLAS-like dataset")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--configurations", nargs="+",
                        default=["3d_hybrid", "2.5d_unet", "2d_lcnn"])  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=["auto"],
        help="time the step under each (auto: what training picks here)",
    )
    parser.add_argument("--nnunet-python")
    parser.add_argument("--nnunet-plans", help="nnUNetPlans.json of the same data")
    parser.add_argument("--nnunet-configuration", default="3d_fullres")
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.preprocessed:
        folder = Path(args.preprocessed)
        workspace = Workspace(
            folder.parent.parent / "raw", folder.parent, folder.parent.parent / "results"
        )
        dataset = folder.name
    else:
        workspace, dataset = synthetic_dataset(
            Path(args.synthetic or tempfile.mkdtemp()), args.cases
        )
    columns = "".join(f"{'s/iter ' + p:>13}" for p in args.precisions)
    print(f"{'configuration':<12} {'patch':<16} {'batch':>5}{columns} {'loader b/s':>11}")
    channels = 1
    for name in args.configurations:
        row = time_configuration(workspace, dataset, name, args)
        times = "".join(f"{row['s_per_iter'][p]:>13.3f}" for p in args.precisions)
        print(f"{name:<12} {'x'.join(map(str, row['patch'])):<16} {row['batch']:>5}{times} "
              f"{row['loader_batches_per_s']:>11.2f}")  # fmt: skip
    nnunet = nnunet_seconds(args, channels)
    if nnunet is not None:
        print(f"{'nnU-Net ' + args.nnunet_configuration:<35} {nnunet:>8.3f}")


if __name__ == "__main__":
    main()
