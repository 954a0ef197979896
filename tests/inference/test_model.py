"""TrainedModel.from_folder: folds, plans checks, clear errors; choosing what to predict with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg.core.atomic import write_json
from autoseg.core.errors import InvalidInputError
from autoseg.inference.choice import resolve_choice
from autoseg.inference.model import TrainedModel
from tests.pipeline.model_helpers import (
    FOREGROUND,
    affine_network,  # noqa: F401  (a fixture)
    hybrid_spec,
    make_plans,
    make_workspace,
    single_thread,  # noqa: F401  (a fixture)
    write_fold,
    write_results,
)

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    workspace = make_workspace(tmp_path)
    plans = make_plans({"3d_hybrid": hybrid_spec(), "fg": FOREGROUND}, recommended="3d_hybrid")
    return write_results(workspace, plans)


def test_loads_every_trained_fold_with_plans_settings(results: Path) -> None:
    model = TrainedModel.from_folder(results / "3d_hybrid", device="cpu")
    assert model.folds == ("0", "1")
    assert len(model.networks) == 2 and not any(n.training for n in model.networks)
    assert model.settings.patch_size == (4, 8, 8)
    assert model.settings.mirror_axes == (0, 1, 2)
    assert model.spec.spacing_mm == (3.0, 2.0, 2.0)
    assert model.labels == {"background": 0, "lesion": 1}
    reference = write_fold(results / "3d_hybrid", 0, hybrid_spec(), model.plans_id, "best")
    loaded = TrainedModel.from_folder(results / "3d_hybrid", [0], "best").networks[0]
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_refuses_a_checkpoint_of_other_plans(results: Path) -> None:
    write_fold(results / "fg", 1, FOREGROUND, "0123456789abcdef")
    with pytest.raises(InvalidInputError, match="plans_id 0123456789abcdef"):
        TrainedModel.from_folder(results / "fg")


def test_nothing_trained_lists_what_exists(results: Path) -> None:
    config = results / "fg"
    for fold in (0, 1):
        (config / f"fold_{fold}" / "checkpoint_final.pt").rename(
            config / f"fold_{fold}" / "checkpoint_latest.pt"
        )
    with pytest.raises(InvalidInputError, match=r"fold_0: checkpoint_latest\.pt"):
        TrainedModel.from_folder(config)
    with pytest.raises(InvalidInputError, match=r"checkpoint_final\.pt: not found"):
        TrainedModel.from_folder(results / "3d_hybrid", folds=[3])


def test_choice_follows_inference_json_then_the_recommendation(results: Path) -> None:
    assert resolve_choice(results, None, None, None) == (["3d_hybrid"], None, {}, "final")
    write_json(results / "inference.json", {"configurations": ["fg"], "folds": [1],
                                            "postprocessing": {"min_component_voxels": 3},
                                            "checkpoint": "best"})  # fmt: skip
    assert resolve_choice(results, None, None, None) == (
        ["fg"],
        [1],
        {"min_component_voxels": 3},
        "best",
    )
    # another ensemble than the one postprocessing was chosen for: no postprocessing
    assert resolve_choice(results, ["3d_hybrid"], None, None) == (["3d_hybrid"], None, {}, "final")
    assert resolve_choice(results, ["fg"], ["0"], None)[2] == {}
