"""Ensembling saved probability maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume, write_volume
from autoseg.inference.ensemble import average_probability_files, ensemble_folders
from autoseg.inference.outputs import write_probabilities, write_sidecar
from tests.conftest import tiny_meta

SHAPE = (3, 4, 5)


def lesion_map(value: float) -> np.ndarray:
    lesion = np.full(SHAPE, value, np.float32)
    return np.stack([1 - lesion, lesion])


def test_average_of_files_is_their_mean_and_can_be_written(tmp_path: Path) -> None:
    write_probabilities(tmp_path / "a.npz", lesion_map(0.2), "float32")
    write_probabilities(tmp_path / "b.npz", lesion_map(0.6), "float32")
    mean = average_probability_files([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "m.npz")
    np.testing.assert_allclose(mean, lesion_map(0.4), atol=1e-6)
    stored = np.load(tmp_path / "m.npz")["probabilities"]
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored, lesion_map(0.4), atol=1e-3)


def test_shape_mismatch_names_the_file(tmp_path: Path) -> None:
    write_probabilities(tmp_path / "a.npz", lesion_map(0.2))
    write_probabilities(tmp_path / "b.npz", lesion_map(0.2)[:, :2])
    with pytest.raises(InvalidInputError, match=r"b\.npz: probabilities"):
        average_probability_files([tmp_path / "a.npz", tmp_path / "b.npz"])


def write_prediction(folder: Path, case_id: str, value: float, sidecar: bool = True) -> None:
    write_probabilities(folder / f"{case_id}.npz", lesion_map(value))
    if sidecar:
        write_sidecar(folder / f"{case_id}.json", case_id, tiny_meta(SHAPE, oblique=True), 2)


def test_folders_are_paired_by_case_and_written_in_the_sidecar_geometry(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for case_id, (va, vb) in {"x": (0.5, 0.7), "y": (0.1, 0.2)}.items():
        write_prediction(a, case_id, va)
        write_prediction(b, case_id, vb, sidecar=False)
    assert ensemble_folders([a, b], out, save_probabilities=True) == ["x", "y"]
    labels_x, meta = read_volume(out / "x.nii.gz")
    labels_y, _ = read_volume(out / "y.nii.gz")
    assert labels_x.dtype == np.uint8 and labels_x.min() == 1  # mean 0.6
    assert labels_y.max() == 0
    np.testing.assert_allclose(
        meta.affine_array, tiny_meta(SHAPE, oblique=True).affine_array, atol=1e-5
    )
    np.testing.assert_allclose(np.load(out / "x.npz")["probabilities"][1], 0.6, atol=1e-3)
    assert (out / "x.json").is_file()


def test_threshold_postprocessing_applies_to_the_average(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    write_prediction(a, "x", 0.3)
    write_prediction(b, "x", 0.6)
    ensemble_folders([a, b], out, postprocessing={"threshold": 0.5})
    assert read_volume(out / "x.nii.gz")[0].max() == 0  # mean 0.45 < 0.5
    ensemble_folders([a, b], out, postprocessing={"threshold": 0.4}, overwrite=True)
    assert read_volume(out / "x.nii.gz")[0].min() == 1


def test_unpaired_cases_and_missing_geometry_are_reported(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_prediction(a, "x", 0.3)
    write_prediction(a, "y", 0.3)
    write_prediction(b, "x", 0.6)
    with pytest.raises(InvalidInputError, match="no probabilities for case y"):
        ensemble_folders([a, b], tmp_path / "out")
    c = tmp_path / "c"
    write_prediction(c, "z", 0.6, sidecar=False)
    with pytest.raises(InvalidInputError, match=r"no z\.json sidecar"):
        ensemble_folders([c], tmp_path / "out")
    reference = tmp_path / "ref"
    write_volume(reference / "z_0000.nii.gz", np.zeros(SHAPE, np.float32), tiny_meta(SHAPE))
    ensemble_folders([c], tmp_path / "out", reference_dir=reference)
    assert read_volume(tmp_path / "out" / "z.nii.gz")[1].affine == tiny_meta(SHAPE).affine
