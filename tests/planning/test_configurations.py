"""Configurations by registration: a toy fourth configuration, registered here only, is
planned, trained for one step and predicted with; unknown names list the known ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from autoseg.cli import plan_main, predict_main, train_main
from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.data.io import read_volume
from autoseg.planning import device
from autoseg.planning.configurations import (
    ConfigurationKind,
    LadderInputs,
    configuration_kind,
    configuration_names,
    register_configuration,
    unregister_configuration,
)
from autoseg.planning.ladders import tiling_patch_ladder_3d
from autoseg.planning.search import Rung
from autoseg.planning.topology import pooling_3d
from autoseg.plans import load_plans
from tests.conftest import tiny_meta, write_tiny_dataset

BUILT_IN = ("3d_hybrid", "2.5d_unet", "2d_lcnn")
TOY = "3d_toy"


def toy_rungs(inputs: LadderInputs, levels: int) -> list[Rung]:
    """A plain-convolution 3D U-Net (the registered 3d_hybrid network without SE, attention
    gates or transformer), one width per level, on the smallest tiling patch."""
    patch = tiling_patch_ladder_3d(inputs.spacing_mm, inputs.shape, 0.5)[0]
    strides, kernels = pooling_3d(inputs.spacing_mm, patch, max_stages=3)
    rungs = []
    for level in range(levels):
        width = 4 * (level + 1)
        kwargs = {"in_channels": inputs.channels, "num_classes": inputs.classes,
                  "stage_features": [width * 2**s for s in range(len(strides))],
                  "kernel_sizes": kernels, "strides": strides, "groups": 1, "se": False,
                  "attention_gates": False, "transformer_depth": 0,
                  "deep_supervision": True}  # fmt: skip
        rungs.append(Rung({"name": "3d_hybrid", "kwargs": kwargs}, patch))
    return rungs


@pytest.fixture
def toy() -> Iterator[ConfigurationKind]:
    """The toy configuration, registered for one test and removed after it."""
    kind = register_configuration(ConfigurationKind(TOY, "3d_hybrid", 2, 1, toy_rungs))
    yield kind
    unregister_configuration(TOY)


def test_the_built_in_configurations_are_registered() -> None:
    assert configuration_names() == BUILT_IN
    with pytest.raises(InvalidInputError, match=r"known: 3d_hybrid, 2\.5d_unet, 2d_lcnn"):
        configuration_kind("3d_unet")


def test_a_name_is_registered_once(toy: ConfigurationKind) -> None:
    assert configuration_names() == (*BUILT_IN, TOY)
    with pytest.raises(ValueError, match="already registered"):
        register_configuration(toy)


def test_a_registered_configuration_is_planned_trained_and_predicted(
    toy: ConfigurationKind, tmp_path: Path
) -> None:
    workspace = Workspace.under(tmp_path)
    meta = tiny_meta(shape_zyx=(16, 20, 16), spacing_zyx=(2.0, 2.0, 2.0))
    write_tiny_dataset(workspace.raw / "Tiny", cases=3, meta=meta)
    home = ["--home", str(tmp_path)]
    with mock.patch.object(device, "CPU_GFLOPS_PER_ITERATION", 4.0):  # small CPU plans
        plan = ["-d", "Tiny", "--device", "cpu", "-c", TOY, "-np", "1", "--no-progress"]
        assert plan_main([*plan, *home]) == 0
    plans = load_plans(workspace.preprocessed / "Tiny" / "plans.json")
    config = plans.configuration(TOY)
    assert set(plans.configurations) == {*BUILT_IN, TOY}
    assert config.network.name == "3d_hybrid" and config.network.kwargs["transformer_depth"] == 0
    assert config.ladder_rung == 0 and config.slice_context is None  # one CPU level, 3D
    train = ["Tiny", TOY, "all", "--device", "cpu", "--epochs", "1", "--iters-per-epoch", "1",
             "-nw", "0", "--no-progress"]  # fmt: skip
    assert train_main([*train, *home]) == 0
    fold = workspace.results / "Tiny" / TOY / "fold_all"
    assert (fold / "checkpoint_final.pt").is_file()
    out = tmp_path / "predicted"
    images = workspace.raw / "Tiny" / "imagesTr"
    predict = ["-i", str(images), "-o", str(out), "-d", "Tiny", "-c", TOY, "-f", "all",
               "--device", "cpu", "--disable-tta"]  # fmt: skip
    assert predict_main([*predict, *home]) == 0
    labels, written = read_volume(out / "case000.nii.gz")
    assert written.shape == meta.shape and labels.dtype == np.uint8
