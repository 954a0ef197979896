"""The folder predictor: geometry, atomic outputs, --continue, parts, input checks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import autoseg.inference.folder_prediction as predictor_module
from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_meta, read_volume, write_volume
from autoseg.inference.case_prediction import predict_case
from autoseg.inference.ensemble import ensemble_folders
from autoseg.inference.folder_prediction import CasePredictionError, predict_folder, select_part
from autoseg.inference.inputs import discover_cases
from autoseg.inference.outputs import CaseOutputs
from autoseg.inference.settings import InferenceSettings
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.case import preprocess_case, revert_prediction
from tests.conftest import tiny_meta
from tests.inference.conftest import bright_is_lesion


def test_labels_have_the_input_geometry_and_the_expected_values(
    images_dir: Path, tmp_path: Path, spec: PreprocessingSpec, settings: InferenceSettings
) -> None:
    cases = discover_cases(images_dir, 1)
    out = tmp_path / "preds"
    done = predict_folder(cases, out, [bright_is_lesion()], spec, settings)
    assert done == ["case000", "case001", "case002"]
    for case_id, files in cases:
        written, source = nib.load(out / f"{case_id}.nii.gz"), nib.load(files[0])
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
        np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-6)
        assert read_meta(out / f"{case_id}.nii.gz").shape == read_meta(files[0]).shape
        loaded = preprocess_case(files, None, spec, case_id)
        expected = revert_prediction(
            predict_case([bright_is_lesion()], loaded.data, settings), loaded.properties
        )
        labels, _ = read_volume(out / f"{case_id}.nii.gz")
        np.testing.assert_array_equal(labels, expected)
        assert 0 < labels.mean() < 1  # both classes present: the network really ran
    assert sorted(p.name for p in out.iterdir()) == [f"case00{i}.nii.gz" for i in range(3)]


def lesion_everywhere() -> torch.nn.Module:
    """1x1 conv whose class-1 logit is 5 wherever it looks: a model with no idea of air."""
    conv = torch.nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, 5.0]))
    return conv.eval()


def test_nothing_is_marked_outside_the_body_the_model_was_never_taught(
    tmp_path: Path, spec: PreprocessingSpec, settings: InferenceSettings
) -> None:
    # A ball-shaped head in zero air: the crop box keeps the air in its corners, where the
    # training labels are -1 (ignored); the prediction there must be background.
    meta = tiny_meta((8, 12, 12), (3.0, 2.0, 2.0))
    z, y, x = np.mgrid[:8, :12, :12]
    head = ((z - 3.5) / 3.5) ** 2 + ((y - 5.5) / 5.0) ** 2 + ((x - 5.5) / 5.0) ** 2 <= 1.0
    image = np.where(head, 100.0 + np.random.default_rng(0).normal(0, 5, head.shape), 0.0)
    images = tmp_path / "images"
    images.mkdir()
    write_volume(images / "case000_0000.nii.gz", image.astype(np.float32), meta)
    out = tmp_path / "preds"
    predict_folder(discover_cases(images), out, [lesion_everywhere()], spec, settings)
    labels, _ = read_volume(out / "case000.nii.gz")
    np.testing.assert_array_equal(labels > 0, head)


def test_saved_probabilities_ensemble_back_to_the_same_labels(
    images_dir: Path, tmp_path: Path, spec: PreprocessingSpec, settings: InferenceSettings
) -> None:
    cases = discover_cases(images_dir)[:2]
    out = tmp_path / "preds"
    predict_folder(cases, out, [bright_is_lesion()], spec, settings.with_(save_probabilities=True))
    probabilities = np.load(out / "case000.npz")["probabilities"]
    assert probabilities.shape == (2, *read_meta(cases[0][1][0]).shape)
    assert probabilities.dtype == np.float16
    np.testing.assert_allclose(probabilities.astype(np.float32).sum(0), 1.0, atol=2e-3)
    ensembled = tmp_path / "ensemble"
    assert ensemble_folders([out, out], ensembled) == ["case000", "case001"]
    for case_id, _ in cases:
        a, meta_a = read_volume(out / f"{case_id}.nii.gz")
        b, meta_b = read_volume(ensembled / f"{case_id}.nii.gz")
        np.testing.assert_array_equal(a, b)
        assert meta_a == meta_b


def test_truncated_input_is_named_and_nothing_is_written(
    images_dir: Path, tmp_path: Path, spec: PreprocessingSpec, settings: InferenceSettings
) -> None:
    broken = images_dir / "case001_0000.nii.gz"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    out = tmp_path / "preds"
    with pytest.raises(InvalidInputError, match=r"case001_0000\.nii\.gz: truncated"):
        predict_folder(discover_cases(images_dir), out, [bright_is_lesion()], spec, settings)
    assert not out.exists() or not any(out.iterdir())


def test_continue_after_a_crash_redoes_only_unfinished_cases(
    images_dir: Path,
    tmp_path: Path,
    spec: PreprocessingSpec,
    settings: InferenceSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases, out = discover_cases(images_dir), tmp_path / "preds"
    real_write = predictor_module._write

    def crash_on_case001(outputs: CaseOutputs, *args: object) -> None:
        if outputs.case_id == "case001":
            raise OSError("disk full")
        real_write(outputs, *args)

    monkeypatch.setattr(predictor_module, "_write", crash_on_case001)
    with pytest.raises(CasePredictionError, match="case001"):
        predict_folder(cases, out, [bright_is_lesion()], spec, settings)
    assert sorted(p.name for p in out.iterdir()) == ["case000.nii.gz"]  # no partial files
    finished = (out / "case000.nii.gz").stat().st_mtime_ns

    monkeypatch.setattr(predictor_module, "_write", real_write)
    with pytest.raises(InvalidInputError, match="--continue"):
        predict_folder(cases, out, [bright_is_lesion()], spec, settings)
    redone = predict_folder(cases, out, [bright_is_lesion()], spec, settings, resume=True)
    assert redone == ["case001", "case002"]
    assert (out / "case000.nii.gz").stat().st_mtime_ns == finished
    assert predict_folder(cases, out, [bright_is_lesion()], spec, settings, resume=True) == []


def test_parts_partition_the_cases(
    images_dir: Path, tmp_path: Path, spec: PreprocessingSpec, settings: InferenceSettings
) -> None:
    ids = [(f"c{i:02d}", []) for i in range(11)]
    parts = [select_part(ids, 4, k) for k in range(4)]
    flat = [case for part in parts for case in part]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(c for c, _ in flat))
    cases, out = discover_cases(images_dir), tmp_path / "preds"
    first = predict_folder(cases, out, [bright_is_lesion()], spec, settings, num_parts=2, part_id=0)
    second = predict_folder(
        cases, out, [bright_is_lesion()], spec, settings, num_parts=2, part_id=1
    )
    assert sorted(first + second) == ["case000", "case001", "case002"] and not set(first) & set(
        second
    )
    with pytest.raises(ValueError, match="part_id"):
        select_part(ids, 2, 2)
