"""Model zip round trip, safe extraction, inference contract, ONNX export."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import autoseg
from autoseg.core.atomic import write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.data.io import read_volume
from autoseg.inference.model_zip import load_model_zip
from autoseg.inference.outputs import read_probabilities
from autoseg.pipeline.export import (
    CONTRACT_NAME,
    export_model_zip,
    export_onnx_from_results,
)
from autoseg.pipeline.predict_step import PredictOptions, predict
from tests.pipeline.model_helpers import (
    DATASET,
    affine_network,  # noqa: F401  (a fixture)
    hybrid_spec,
    make_plans,
    make_workspace,
    single_thread,  # noqa: F401  (a fixture)
    write_results,
)

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws", cases=2, oblique=True)
    plans = make_plans({"3d_hybrid": hybrid_spec(0), "other": hybrid_spec(1)})
    write_results(workspace, plans, {"3d_hybrid": [hybrid_spec(0), hybrid_spec(2)]})
    write_json(workspace.results / DATASET / "inference.json",
               {"configurations": ["3d_hybrid"], "folds": [0, 1], "checkpoint": "final",
                "postprocessing": {"min_component_voxels": 3}})  # fmt: skip
    return workspace


def test_zip_round_trip_predicts_identically(workspace: Workspace, tmp_path: Path) -> None:
    model_zip = export_model_zip(workspace.results / DATASET, None, None, tmp_path / "m.zip")
    with zipfile.ZipFile(model_zip) as archive:
        names = set(archive.namelist())
        contract = json.loads(archive.read(CONTRACT_NAME))
    assert {"3d_hybrid/plans.json", "3d_hybrid/dataset.json",
            "3d_hybrid/fold_1/checkpoint_final.pt"} <= names  # fmt: skip
    assert not any(n.startswith("other/") for n in names)
    assert contract["autoseg_version"] == autoseg.__version__
    assert contract["postprocessing"] == {"min_component_voxels": 3}
    block = contract["per_configuration"]["3d_hybrid"]
    assert block["spacing_mm"] == [3.0, 2.0, 2.0] and block["mirror_axes"] == [0, 1, 2]
    assert block["folds"] == [0, 1] and contract["labels"] == {"background": 0, "lesion": 1}
    models, post = load_model_zip(model_zip)
    assert [m.folds for m in models] == [("0", "1")] and post == {"min_component_voxels": 3}
    images = workspace.raw / DATASET / "imagesTr"
    kwargs = {"device": "cpu", "save_probabilities": True, "disable_tta": True}
    predict(workspace, DATASET, images, tmp_path / "a", PredictOptions(**kwargs))
    predict(None, None, images, tmp_path / "b", PredictOptions(model_zip=model_zip, **kwargs))
    for case in ("case000", "case001"):
        a, meta_a = read_volume(tmp_path / "a" / f"{case}.nii.gz")
        b, meta_b = read_volume(tmp_path / "b" / f"{case}.nii.gz")
        np.testing.assert_array_equal(a, b)
        assert meta_a == meta_b
        np.testing.assert_array_equal(
            read_probabilities(tmp_path / "a" / f"{case}.npz"),
            read_probabilities(tmp_path / "b" / f"{case}.npz"),
        )


def test_a_subset_of_a_zip_gets_its_plans_size_rule(tmp_path: Path) -> None:
    """The contract's choice was made for the whole ensemble; a subset falls back to the
    plans' default, as ``-c`` does in a workspace (it used to lose every rule)."""
    workspace = make_workspace(tmp_path / "ws", cases=2)
    size_rule = {"min_lesion_ml": 0.03}
    plans = make_plans({"3d_hybrid": hybrid_spec(0), "other": hybrid_spec(1)},
                       postprocessing=size_rule)  # fmt: skip
    write_results(workspace, plans)
    write_json(workspace.results / DATASET / "inference.json",
               {"configurations": ["3d_hybrid", "other"], "folds": [0, 1],
                "postprocessing": {"min_component_voxels": 3}})  # fmt: skip
    model_zip = export_model_zip(workspace.results / DATASET, None, None, tmp_path / "m.zip")
    _, whole = load_model_zip(model_zip, configurations=["other", "3d_hybrid"])
    subset, post = load_model_zip(model_zip, configurations=["other"])
    assert whole == {**size_rule, "min_component_voxels": 3}
    assert [m.configuration for m in subset] == ["other"] and post == size_rule
    with pytest.raises(InvalidInputError, match="holds none of"):
        load_model_zip(model_zip, configurations=["2d_lcnn"])


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_path_traversal_is_refused(tmp_path: Path, member: str) -> None:
    model_zip = tmp_path / "inner" / "bad.zip"
    model_zip.parent.mkdir()
    with zipfile.ZipFile(model_zip, "w") as archive:
        archive.writestr(CONTRACT_NAME, "{}")
        archive.writestr(member, "pwned")
    with pytest.raises(InvalidInputError, match="refused"):
        load_model_zip(model_zip)
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()


def test_symlink_members_are_refused(tmp_path: Path) -> None:
    model_zip = tmp_path / "link.zip"
    with zipfile.ZipFile(model_zip, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidInputError, match="symbolic link"):
        load_model_zip(model_zip)


def test_onnx_export_writes_graph_and_contract(workspace: Workspace, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx_path, json_path = export_onnx_from_results(
        workspace.results / DATASET, "3d_hybrid", 1, tmp_path / "model.onnx"
    )
    contract = json.loads(json_path.read_text())
    assert json_path == tmp_path / "model.json" and contract["onnx"]["input"] == "image"
    assert contract["per_configuration"]["3d_hybrid"]["folds"] == [1]
    session = onnxruntime.InferenceSession(str(onnx_path))
    logits = session.run(None, {"image": np.zeros((1, 1, 4, 8, 8), np.float32)})[0]
    assert logits.shape == (1, 2, 4, 8, 8)
