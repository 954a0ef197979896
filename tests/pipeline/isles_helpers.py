"""A workspace with the real ISLES'22 cases converted and a known (1x1 convolution) model.

``raw/ISLES`` holds strokecase0009 (labelled) and strokecase0001 (test) converted from
the release layout (``tests/data/test_convert_isles22.release_tree``); ``results/ISLES/
affine/fold_{0,1}`` hold checkpoints of an AffineNetwork on two channels (DWI, ADC) whose
foreground logit is ``2 * z(DWI) - 3``: the brightest DWI voxels (acute lesions are bright
on DWI) come out as lesion, so predictions have lesions and probabilities in between.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autoseg.core.workspace import Workspace
from autoseg.data.convert import convert
from autoseg.plans import finalize, write_plans
from tests.data.convert_helpers import release_tree
from tests.pipeline.model_helpers import AFFINE_NETWORK, configuration_entry, write_fold

DATASET, CONFIG = "ISLES", "affine"
NETWORK = {"name": AFFINE_NETWORK,
           "kwargs": {"in_channels": 2, "num_classes": 2, "weight": [0.0, 2.0],
                      "bias": [0.0, -3.0]}}  # fmt: skip


def isles_plans():
    entry = configuration_entry(NETWORK, spacing=(2.0, 2.0, 2.0))
    entry.update(patch_size=[48, 64, 64], normalization=[{"scheme": "zscore_brain"}] * 2)
    entry["inference"] = {"step": 1.0, "gaussian": True, "mirror_axes": [2]}
    return finalize({"dataset": DATASET, "gpu_memory_gb": 1.0, "gpu_memory_source": "default",
                     "device": "cpu", "recommended_configuration": CONFIG,
                     "configurations": {CONFIG: entry}})  # fmt: skip


def isles_workspace(root: Path, realdata: Path) -> tuple[Workspace, Path]:
    """The workspace and the release-layout source tree it was converted from."""
    workspace = Workspace.under(root / "home")
    source = release_tree(root / "ISLES-2022", realdata)
    convert("isles22", source, workspace.raw / DATASET, progress=False)
    plans = isles_plans()
    config = workspace.results / DATASET / CONFIG
    config.mkdir(parents=True)
    write_plans(config / "plans.json", plans)
    shutil.copyfile(workspace.raw / DATASET / "dataset.json", config / "dataset.json")
    for fold in (0, 1):
        write_fold(config, fold, NETWORK, plans.plans_id)
    return workspace, source
