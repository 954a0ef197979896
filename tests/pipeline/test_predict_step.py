"""predict(): single configuration, ensembles of configurations, resuming, npy sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.cli.predict import predict_parser
from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.data.io import read_meta, read_volume
from autoseg.inference.outputs import read_probabilities
from autoseg.pipeline.predict_step import PredictOptions, _settings_overrides, predict
from tests.pipeline.model_helpers import (
    DATASET,
    affine_network,  # noqa: F401  (a fixture)
    affine_spec,
    hybrid_spec,
    make_plans,
    make_workspace,
    single_thread,  # noqa: F401  (a fixture)
    write_results,
)

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")

# lesion where the z-scored intensity is above 0 (a model with a varied, known output)
BRIGHT = affine_spec([0.0, 0.0], [0.0, 3.0])
SHIFTED = affine_spec([0.0, -2.0], [0.0, 1.0])  # lesion where the z-score is above 2


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws", cases=3, oblique=True)
    plans = make_plans({"3d_hybrid": hybrid_spec(), "bright": BRIGHT, "shifted": SHIFTED})
    write_results(workspace, plans)
    return workspace


def images(workspace: Workspace) -> Path:
    return workspace.raw / DATASET / "imagesTr"


def test_labels_are_written_in_the_inputs_exact_geometry(workspace: Workspace, tmp_path: Path):
    out = tmp_path / "out"
    options = PredictOptions(["3d_hybrid"], device="cpu")
    done = predict(workspace, DATASET, images(workspace), out, options)
    assert done == ["case000", "case001", "case002"]
    for case in done:
        labels, meta = read_volume(out / f"{case}.nii.gz")
        assert meta == read_meta(images(workspace) / f"{case}_0000.nii.gz")
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1}
    with pytest.raises(InvalidInputError, match="exists"):
        predict(workspace, DATASET, images(workspace), out, options)
    resume = PredictOptions(["3d_hybrid"], resume=True)
    assert predict(workspace, DATASET, images(workspace), out, resume) == []


def test_an_ensemble_averages_the_configurations_probabilities(
    workspace: Workspace, tmp_path: Path
) -> None:
    kwargs = {"device": "cpu", "save_probabilities": True, "disable_tta": True}
    for name in ("bright", "shifted"):
        predict(
            workspace, DATASET, images(workspace), tmp_path / name, PredictOptions([name], **kwargs)
        )
    ensemble = tmp_path / "ensemble"
    predict(
        workspace,
        DATASET,
        images(workspace),
        ensemble,
        PredictOptions(["bright", "shifted"], **kwargs),
    )
    for case in ("case000", "case002"):
        parts = [read_probabilities(tmp_path / n / f"{case}.npz").astype(np.float32)
                 for n in ("bright", "shifted")]  # fmt: skip
        mean = read_probabilities(ensemble / f"{case}.npz").astype(np.float32)
        np.testing.assert_allclose(mean, (parts[0] + parts[1]) / 2, atol=2e-3)
        labels, _ = read_volume(ensemble / f"{case}.nii.gz")
        decisive = np.abs(mean[1] - mean[0]) > 1e-2  # float16 npz: ties may round either way
        np.testing.assert_array_equal(labels[decisive], np.argmax(mean, axis=0)[decisive])
        # the ensemble's cut lies between the two configurations' cuts
        sizes = [np.argmax(p, axis=0).sum() for p in parts]
        assert sizes[1] < labels.sum() < sizes[0]
    assert not [p for p in ensemble.iterdir() if p.name.startswith(".partial")]


def test_npy_inputs_are_converted_first(workspace: Workspace, tmp_path: Path) -> None:
    source = tmp_path / "npy" / "images"
    source.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(source / "p1.npy", rng.normal(100, 10, (6, 12, 10)).astype(np.float32))
    out = tmp_path / "out"
    done = predict(workspace, DATASET, source.parent, out,
                   PredictOptions(["bright"], device="cpu", source="npy",
                                  spacing=(3.0, 2.0, 2.0)))  # fmt: skip
    assert done == ["p1"]
    labels, meta = read_volume(out / "p1.nii.gz")
    assert labels.shape == (6, 12, 10) and meta.spacing_mm == pytest.approx((3.0, 2.0, 2.0))


def test_no_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="dataset"):
        predict(None, None, tmp_path, tmp_path / "out")
    workspace = make_workspace(tmp_path / "ws")
    with pytest.raises(InvalidInputError, match="no results"):
        predict(workspace, DATASET, tmp_path, tmp_path / "out")


def test_the_amp_flag_reaches_the_inference_settings() -> None:
    args = predict_parser().parse_args(["-i", "in", "-o", "out", "-d", "X", "--amp"])
    assert args.amp and not predict_parser().parse_args(["-i", "a", "-o", "b"]).amp
    assert _settings_overrides(PredictOptions(amp=True), False)["amp"] is True
    assert _settings_overrides(PredictOptions(), False)["amp"] is False
