"""The single-case path: preprocess, then revert to the input's exact grid and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_meta, read_volume, write_label, write_volume
from autoseg.data.records import ImageMeta
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.case import (
    preprocess_arrays,
    preprocess_case,
    revert_prediction,
    revert_probabilities,
)
from tests.conftest import tiny_meta

MR = (ChannelNormalization("zscore_brain"),)


def head_case(meta: ImageMeta, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A blob of tissue with zero margins (so cropping happens) holding a lesion block."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in meta.shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.75
    image = np.where(inside, rng.normal(300.0, 30.0, meta.shape), 0.0).astype(np.float32)
    labels = np.zeros(meta.shape, np.uint8)
    centre = [n // 2 for n in meta.shape]
    labels[
        tuple(
            slice(c - max(1, n // 4), c + max(1, n // 4))
            for c, n in zip(centre, meta.shape, strict=True)
        )
    ] = 1
    return image, labels


def write_case(folder: Path, meta: ImageMeta) -> tuple[list[Path], Path, np.ndarray]:
    image, labels = head_case(meta)
    image_file, label_file = folder / "c_0000.nii.gz", folder / "c.nii.gz"
    write_volume(image_file, image, meta)
    write_label(label_file, labels, meta)
    return [image_file], label_file, labels


def one_hot(seg: np.ndarray, classes: int = 2) -> np.ndarray:
    """Probabilities (K, Z, Y, X) from cached labels (-1 counts as background)."""
    labels = np.clip(seg.reshape(seg.shape[-3:]), 0, None)
    return np.stack([(labels == k).astype(np.float32) for k in range(classes)])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


GEOMETRIES = {
    "isotropic": (tiny_meta((16, 18, 20), (1.0, 1.0, 1.0)), (1.5, 1.5, 1.5)),
    "anisotropic": (tiny_meta((8, 24, 22), (4.0, 0.8, 0.8)), (4.0, 1.2, 1.2)),
    "oblique": (tiny_meta((10, 16, 14), (3.0, 1.5, 1.25), oblique=True), (3.0, 2.0, 2.0)),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_revert_returns_the_input_grid_exactly(tmp_path: Path, name: str) -> None:
    meta, spacing = GEOMETRIES[name]
    image_files, label_file, labels = write_case(tmp_path, meta)
    spec = PreprocessingSpec(spacing_mm=spacing, normalization=MR)
    case = preprocess_case(image_files, label_file, spec, "c")
    assert case.data.shape[1:] == case.properties.shape_after_resampling
    assert case.properties.shape_after_crop != meta.shape  # the zero margin was cropped
    reverted = revert_prediction(one_hot(case.seg), case.properties)
    write_label(tmp_path / "pred.nii.gz", reverted, case.properties.meta)
    written = read_meta(tmp_path / "pred.nii.gz")
    source = read_meta(image_files[0])
    assert written.shape == source.shape == tuple(labels.shape)
    np.testing.assert_array_equal(written.affine_array, source.affine_array)
    assert (written.qform_code, written.sform_code) == (source.qform_code, source.sform_code)
    restored = read_volume(tmp_path / "pred.nii.gz")[0] == 1
    # Small blocks may lose a voxel per edge (within one grid step), but never shift.
    assert dice(restored, labels == 1) > 0.75
    shift = np.array(ndimage.center_of_mass(restored)) - ndimage.center_of_mass(labels == 1)
    assert np.all(np.abs(shift) < 0.5)


def test_same_spacing_round_trip_is_exact(tmp_path: Path) -> None:
    meta = tiny_meta((10, 16, 14), (3.0, 1.5, 1.25), oblique=True)
    image_files, label_file, labels = write_case(tmp_path, meta)
    spec = PreprocessingSpec(spacing_mm=meta.spacing_mm, normalization=MR)
    case = preprocess_case(image_files, label_file, spec, "c")
    np.testing.assert_array_equal(revert_prediction(one_hot(case.seg), case.properties), labels)
    np.testing.assert_array_equal(revert_prediction(case.seg.clip(0), case.properties), labels)


def test_coarser_spacing_keeps_the_lesion(tmp_path: Path) -> None:
    meta = tiny_meta((24, 28, 26), (1.0, 1.0, 1.0))
    image, labels = head_case(meta)
    spec = PreprocessingSpec(spacing_mm=(2.0, 2.0, 2.0), normalization=MR)
    case = preprocess_arrays(image[None], meta, spec, labels, "c")
    expected = tuple(round(n / 2) for n in case.properties.shape_after_crop)
    assert case.data.shape[1:] == expected == case.properties.shape_after_resampling
    reverted = revert_prediction(one_hot(case.seg), case.properties)
    assert (
        reverted.shape == labels.shape and dice(reverted == 1, labels == 1) > 0.75
    )  # small blocks: a voxel lost per edge is within the grid step


def test_cached_labels_mark_outside_and_sample_the_lesion() -> None:
    meta = tiny_meta((16, 18, 20), (1.0, 1.0, 1.0))
    image, labels = head_case(meta)
    spec = PreprocessingSpec(spacing_mm=(1.0, 1.0, 1.0), normalization=MR, foreground_samples=50)
    case = preprocess_arrays(image[None], meta, spec, labels, "c")
    seg = case.seg[0]
    assert case.seg.dtype == np.int8 and case.seg.shape[0] == 1
    assert (seg == -1).any() and np.all(case.data[0][seg == -1] == 0.0)
    props = case.properties
    assert props.class_voxel_counts[1] == int(labels.sum())
    coords = props.foreground_coordinates[1]
    assert coords.shape == (50, 3) and np.all(seg[tuple(coords.T)] == 1)
    again = preprocess_arrays(image[None], meta, spec, labels, "c")
    np.testing.assert_array_equal(again.properties.foreground_coordinates[1], coords)


def test_revert_probabilities_fill_background_outside_the_crop() -> None:
    meta = tiny_meta((16, 18, 20), (1.0, 1.0, 1.0))
    image, _ = head_case(meta)
    spec = PreprocessingSpec(spacing_mm=(2.0, 2.0, 2.0), normalization=MR)
    case = preprocess_arrays(image[None], meta, spec, None)
    assert case.seg is None
    probabilities = revert_probabilities(one_hot(np.ones(case.data.shape[1:])), case.properties)
    assert probabilities.shape == (2, *meta.shape)
    box = case.properties.crop_box
    outside = np.ones(meta.shape, bool)
    outside[box.slices] = False
    assert np.all(probabilities[0][outside] == 1.0) and np.all(probabilities[1][outside] == 0.0)
    np.testing.assert_allclose(probabilities[1][box.slices], 1.0, atol=1e-5)


def test_mismatched_label_grid_names_the_file(tmp_path: Path) -> None:
    meta = tiny_meta((10, 16, 14), (3.0, 1.5, 1.25))
    image_files, _, labels = write_case(tmp_path, meta)
    bad = tmp_path / "bad.nii.gz"
    write_label(bad, labels[:, :, :-1], tiny_meta((10, 16, 13), (3.0, 1.5, 1.25)))
    spec = PreprocessingSpec(spacing_mm=(3.0, 1.5, 1.5), normalization=MR)
    with pytest.raises(InvalidInputError, match=r"bad\.nii\.gz: grid differs"):
        preprocess_case(image_files, bad, spec)


def test_single_slice_images_and_n4_and_float16_go_through() -> None:
    meta = tiny_meta((1, 24, 20), (5.0, 0.5, 0.5))
    image, labels = head_case(meta)
    spec = PreprocessingSpec(
        spacing_mm=(5.0, 1.0, 1.0), normalization=MR, n4=True, data_dtype="float16"
    )
    case = preprocess_arrays(image[None], meta, spec, labels, "slice")
    assert case.data.dtype == np.float16 and np.isfinite(case.data).all()
    assert case.properties.thick_axis == 0 and case.data.shape[1] == 1
    reverted = revert_prediction(one_hot(case.seg), case.properties)
    assert reverted.shape == labels.shape and dice(reverted == 1, labels == 1) > 0.75


def test_multiclass_probabilities_revert_with_a_thick_axis() -> None:
    meta = tiny_meta((6, 20, 20), (5.0, 1.0, 1.0))
    image, _ = head_case(meta)
    labels = np.zeros(meta.shape, np.uint8)
    labels[1:3, 6:14, 6:14] = 1
    labels[3:5, 6:14, 6:14] = 2
    spec = PreprocessingSpec(spacing_mm=(5.0, 2.0, 2.0), normalization=MR)
    case = preprocess_arrays(image[None], meta, spec, labels, "c")
    reverted = revert_prediction(one_hot(case.seg, classes=3), case.properties)
    for value in (1, 2):
        # The thick axis is never blended: each class stays in exactly its own slices.
        np.testing.assert_array_equal(
            reverted.any(axis=(1, 2)) & (reverted == value).any(axis=(1, 2)),
            (labels == value).any(axis=(1, 2)),
        )
        assert dice(reverted == value, labels == value) > 0.8
