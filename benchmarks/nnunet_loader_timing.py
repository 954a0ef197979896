"""Seconds per batch of nnU-Net v2's own training pipeline, in one process (one core).

Run by ``benchmarks/loader_gpu_scale.py`` with the nnU-Net venv's python (it imports only
nnunetv2 and its dependencies):

    nnUNet_preprocessed=... nnUNet_results=... python nnunet_loader_timing.py ARGS_JSON

``ARGS_JSON`` holds ``plans_file``, ``dataset_json``, ``configuration``, ``patch_size``,
``batch_size``, ``batches``, ``warmup`` and ``output`` (a JSON file to write). The batches come from
``nnUNetTrainer.get_dataloaders()`` with ``nnUNet_n_proc_DA=0``: its
``nnUNetDataLoader`` (foreground oversampling, the enlarged initial patch) and its
default ``get_training_transforms`` (spatial, noise, blur, brightness, contrast, low
resolution, gamma, mirroring, deep-supervision downsampling) in a
``SingleThreadedAugmenter``, i.e. what one of its augmentation workers does per batch.
The network is never built (``initialize`` is not called): only the data pipeline runs.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    args = json.loads(Path(sys.argv[1]).read_text())
    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112 (nnU-Net spells it so)
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(1)  # one core, as one augmentation worker has
    plans = json.loads(Path(args["plans_file"]).read_text())
    plans["continue_training"] = False  # nnUNetv2_train's get_trainer_from_args sets it
    # The data pipeline never sees the network, so the patch is set exactly (not padded to
    # a multiple of the network's total stride) to match the other settings' patch.
    config = plans["configurations"][args["configuration"]]
    config["patch_size"], config["batch_size"] = list(args["patch_size"]), int(args["batch_size"])
    dataset_json = json.loads(Path(args["dataset_json"]).read_text())
    trainer = nnUNetTrainer(plans, args["configuration"], "all", dataset_json,
                            device=torch.device("cpu"))  # fmt: skip
    trainer.batch_size = trainer.configuration_manager.batch_size
    train, _ = trainer.get_dataloaders()  # also draws one batch of each (warm start)
    for _ in range(int(args["warmup"])):
        next(train)
    stamps = [time.perf_counter()]
    cpu = [time.process_time()]
    for _ in range(int(args["batches"])):
        batch = next(train)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
    seconds = [b - a for a, b in itertools.pairwise(stamps)]
    cpu_seconds = [b - a for a, b in itertools.pairwise(cpu)]
    result = {
        "median_s": statistics.median(seconds),
        "median_cpu_s": statistics.median(cpu_seconds),
        "seconds": seconds,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "batch_size": int(trainer.batch_size),
        "data_shape": list(batch["data"].shape),
        "targets": len(batch["target"]) if isinstance(batch["target"], list) else 1,
    }
    Path(args["output"]).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
