"""Lesion tables: the real ISLES'22 mask against an independent scipy count, and the
columns that need probabilities, agreement, a brain mask or an atlas."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from autoseg.core.errors import InvalidInputError
from autoseg.data.bids import table_problems
from autoseg.data.io import write_volume
from autoseg.data.prediction_files import write_probabilities
from autoseg.evaluation.lesion_files import (
    LesionCase,
    label_folder_cases,
    lesion_tables,
    load_atlas,
)
from autoseg.evaluation.lesion_table import VoxelMaps, majority_per_component, measure_lesions
from autoseg.evaluation.lesions import label_components
from tests.conftest import tiny_meta

CASE = "sub-strokecase0009/ses-0001/sub-strokecase0009_ses-0001"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def independent_lesions(mask_file: Path, connectivity: int) -> list[dict[str, object]]:
    """Components of the NIfTI by scipy (not cc3d): voxels, ml, centroid ijk and world."""
    image = nib.load(mask_file)
    data = np.asanyarray(image.dataobj) > 0  # (i, j, k)
    rank = {26: 3, 6: 1}[connectivity]
    labels, count = ndimage.label(data, ndimage.generate_binary_structure(3, rank))
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000
    found = []
    for index in range(1, count + 1):
        ijk = np.argwhere(labels == index).mean(axis=0)
        found.append({"voxels": int((labels == index).sum()), "ijk": ijk,
                      "ml": (labels == index).sum() * voxel_ml,
                      "mm": nib.affines.apply_affine(image.affine, ijk)})  # fmt: skip
    return found


@pytest.mark.parametrize("connectivity", [26, 6])
def test_real_mask_matches_an_independent_computation(
    tmp_path: Path, realdata_dir: Path, connectivity: int
) -> None:
    mask = realdata_dir / "isles22_sample/derivatives" / f"{CASE}_msk.nii.gz"
    dwi = realdata_dir / "isles22_sample/rawdata" / f"{CASE}_dwi.nii.gz"
    case = LesionCase("strokecase0009", mask, image=dwi, participant_id="sub-strokecase0009",
                      session_id="ses-0001")  # fmt: skip
    lesion_tables(tmp_path, [case], connectivity)
    rows = read_tsv(tmp_path / "lesions.tsv")
    expected = independent_lesions(mask, connectivity)
    assert len(rows) == len(expected) == {26: 18, 6: 21}[connectivity]
    assert [int(r["lesion"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["voxels"]) for r in rows] == sorted((e["voxels"] for e in expected), reverse=True)
    for row in rows:
        ijk = np.array([float(row[f"centroid_{a}"]) for a in "ijk"])
        match = min(expected, key=lambda e: np.abs(e["ijk"] - ijk).sum())
        assert np.allclose(ijk, match["ijk"], atol=1e-4)
        assert int(row["voxels"]) == match["voxels"]
        assert float(row["volume_ml"]) == pytest.approx(match["ml"], abs=1e-4)
        mm = np.array([float(row[f"centroid_{a}_mm"]) for a in "xyz"])
        assert np.allclose(mm, match["mm"], atol=1e-3)
        assert row["connectivity"] == str(connectivity)
        assert row["hemisphere_method"] == "brain_midsagittal"
        assert row["participant_id"] == "sub-strokecase0009" and row["session_id"] == "ses-0001"
    [total] = read_tsv(tmp_path / "cases.tsv")
    assert int(total["lesions"]) == len(expected)
    assert float(total["volume_ml"]) == pytest.approx(sum(e["ml"] for e in expected), abs=1e-4)
    left, right = float(total["left_volume_ml"]), float(total["right_volume_ml"])
    assert left + right == pytest.approx(float(total["volume_ml"]), abs=1e-3)
    assert table_problems(tmp_path / "lesions.tsv") == []
    assert table_problems(tmp_path / "cases.tsv") == []


def _case(tmp_path: Path, labels: np.ndarray, meta=None, **files: Path) -> LesionCase:
    meta = meta or tiny_meta()
    path = tmp_path / "labels.nii.gz"
    write_volume(path, labels, meta, np.uint8)
    return LesionCase("c", path, **files)


def test_a_case_without_lesions_gets_a_row_of_zeros(tmp_path: Path) -> None:
    empty = np.zeros(tiny_meta().shape, np.uint8)
    lesion_tables(tmp_path, [_case(tmp_path, empty)], 26)
    assert read_tsv(tmp_path / "lesions.tsv") == []
    [row] = read_tsv(tmp_path / "cases.tsv")
    assert (row["lesions"], row["voxels"], row["volume_ml"], row["largest_lesion_ml"]) == (
        "0", "0", "0.0000", "0.0000")  # fmt: skip
    assert row["mean_probability"] == "n/a" and row["hemisphere_method"] == "grid_midsagittal"


def test_probabilities_agreement_and_bounding_box(tmp_path: Path) -> None:
    meta = tiny_meta()  # (8, 12, 10) at (3, 1.5, 1.25) mm
    labels = np.zeros(meta.shape, np.uint8)
    labels[2:4, 3:6, 1:3] = 1  # 12 voxels: k 2..3, j 3..5, i 1..2
    labels[6, 10, 8] = 1  # a one-voxel lesion
    foreground = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    foreground[2, 3, 1] = 0.95
    write_probabilities(tmp_path / "c.npz", np.stack([1 - foreground, foreground]), "float32")
    disagreement = np.where(labels > 0, 0.5, 0.0).astype(np.float32)
    write_volume(tmp_path / "c_disagreement.nii.gz", disagreement, meta)
    write_volume(tmp_path / "c.nii.gz", labels, meta, np.uint8)
    [case] = label_folder_cases(tmp_path, ["c"], ".nii.gz")
    assert case.probabilities is not None and case.disagreement is not None
    lesion_tables(tmp_path / "out", [case], 26)
    first, second = read_tsv(tmp_path / "out/lesions.tsv")
    bbox = [int(first[f"bbox_{a}_{e}"]) for a in "ijk" for e in ("min", "max")]
    assert bbox == [1, 2, 3, 5, 2, 3] and first["voxels"] == "12"
    assert float(first["volume_ml"]) == pytest.approx(12 * 3 * 1.5 * 1.25 / 1000, abs=1e-4)
    assert float(first["mean_probability"]) == pytest.approx((11 * 0.8 + 0.95) / 12, abs=1e-4)
    assert float(first["max_probability"]) == pytest.approx(0.95, abs=1e-4)
    assert float(first["fold_agreement"]) == pytest.approx(0.5)
    assert second["voxels"] == "1" and second["lesion"] == "2"


def test_hemisphere_by_mni_sign_and_by_brain_midline(tmp_path: Path) -> None:
    meta = tiny_meta()  # affine diag(1.25, 1.5, 3): world x = 1.25 * i
    labels = np.zeros(meta.shape, np.uint8)
    labels[4, 6, 1] = 1  # x = 1.25 mm
    mni = type(meta)(**{**meta.__dict__, "sform_code": 4})
    lesion_tables(tmp_path / "mni", [_case(tmp_path, labels, mni)], 26)
    [row] = read_tsv(tmp_path / "mni/lesions.tsv")
    assert (row["hemisphere"], row["hemisphere_method"]) == ("right", "mni_x_sign")
    brain = np.zeros(meta.shape, np.float32)
    brain[:, :, 2:] = 1.0  # brain centre at i = 5.5: the lesion at i = 1 is on the left
    write_volume(tmp_path / "brain.nii.gz", brain, meta)
    case = _case(tmp_path, labels, image=tmp_path / "brain.nii.gz")
    measured = lesion_tables(tmp_path / "native", [case], 26)
    assert measured[0].lesions[0].hemisphere == "left"
    assert measured[0].hemisphere_method == "brain_midsagittal"
    assert (measured[0].left_ml, measured[0].right_ml) == (measured[0].volume_ml, 0.0)


def test_atlas_loads_per_region_on_the_grid_and_resampled(tmp_path: Path) -> None:
    meta = tiny_meta()
    atlas = np.zeros(meta.shape, np.uint8)
    atlas[:, :, :5], atlas[:, :, 5:] = 1, 2
    write_volume(tmp_path / "atlas.nii.gz", atlas, meta)
    (tmp_path / "names.tsv").write_text("index\tname\n1\tleft territory\n2\tright\n3\tabsent\n")
    labels = np.zeros(meta.shape, np.uint8)
    labels[2:4, 2:4, 3:7] = 1  # 8 voxels in region 1, 8 in region 2
    loaded = load_atlas(tmp_path / "atlas.nii.gz", tmp_path / "names.tsv")
    lesion_tables(tmp_path / "out", [_case(tmp_path, labels)], 26, loaded)
    rows = read_tsv(tmp_path / "out/regions.tsv")
    voxel_ml = 3 * 1.5 * 1.25 / 1000
    assert [r["region"] for r in rows] == ["left territory", "right", "absent"]
    assert float(rows[0]["lesion_volume_ml"]) == pytest.approx(8 * voxel_ml, abs=1e-4)
    assert float(rows[0]["lesion_percent_of_region"]) == pytest.approx(100 * 8 / 480, abs=1e-3)
    assert rows[2]["lesion_percent_of_region"] == "n/a"
    assert read_tsv(tmp_path / "out/lesions.tsv")[0]["region"] in ("left territory", "right")
    # The same atlas on a grid twice as fine (same world extent): nearest neighbour.
    fine = type(meta)(**{**meta.__dict__, "shape": (16, 24, 20),
                         "spacing_mm": (1.5, 0.75, 0.625),
                         "affine": tuple(tuple(v / 2 if i == j and i < 3 else v
                                               for j, v in enumerate(row))
                                         for i, row in enumerate(meta.affine))})  # fmt: skip
    write_volume(tmp_path / "fine.nii.gz", np.repeat(np.repeat(np.repeat(
        atlas, 2, 0), 2, 1), 2, 2), fine)  # fmt: skip
    resampled = load_atlas(tmp_path / "fine.nii.gz", tmp_path / "names.tsv")
    lesion_tables(tmp_path / "fine_out", [_case(tmp_path, labels)], 26, resampled)
    again = read_tsv(tmp_path / "fine_out/regions.tsv")
    assert [r["lesion_volume_ml"] for r in again] == [r["lesion_volume_ml"] for r in rows]


def test_atlas_names_table_errors(tmp_path: Path) -> None:
    (tmp_path / "names.tsv").write_text("id\tlabel\n1\tx\n")
    with pytest.raises(InvalidInputError) as error:
        load_atlas(tmp_path / "x.nii.gz", tmp_path / "names.tsv")
    assert error.value.problems == [
        f"{tmp_path / 'x.nii.gz'}: file not found",
        f"{tmp_path / 'names.tsv'}: needs tab-separated columns 'index' and 'name'",
    ]


def brute_majority(values: np.ndarray) -> int:
    """The most frequent value (ties: smallest), 0 only when nothing else is there."""
    counts = np.bincount(values)
    if counts.size > 1 and counts[1:].any():
        counts[0] = 0
    return int(np.argmax(counts))


def test_majority_per_component_matches_a_count_per_component() -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 40, 5000)
    values = rng.integers(0, 4, 5000) * (rng.random(5000) < 0.9)
    values[ids == 7] = 0  # a component of zeros only keeps 0
    values[ids == 8] = np.where(np.arange((ids == 8).sum()) < 3, 2, 0)  # 2 beats many zeros
    found = majority_per_component(ids, values, 40, ignore_zero=True)
    expected = [brute_majority(values[ids == i]) if (ids == i).any() else 0 for i in range(1, 41)]
    assert found.tolist() == expected
    assert found[6] == 0 and found[7] == 2
    assert majority_per_component(ids[:0], values[:0], 3, ignore_zero=True).tolist() == [0, 0, 0]


def test_thousands_of_blobs_measured_as_one_by_one() -> None:
    """A many-blob prediction (an untrained network) gets every lesion's size, centroid,
    majority label and atlas region right, as a loop over components computes them."""
    rng = np.random.default_rng(5)
    shape = (30, 36, 28)
    labels = ((rng.random(shape) < 0.04) * rng.integers(1, 3, shape)).astype(np.uint8)
    atlas = rng.integers(0, 5, shape)
    meta = tiny_meta(shape)
    names = {1: "a", 2: "b", 3: "c", 4: "d"}
    result = measure_lesions("c", labels, meta, 26, VoxelMaps(atlas=atlas), None, names)
    components, count = label_components(labels > 0, 26)
    assert len(result.lesions) == count > 500
    by_centroid = {}
    for index in range(1, count + 1):
        own = components == index
        zyx = np.argwhere(own).mean(axis=0)
        by_centroid[tuple(np.round(zyx[::-1], 6))] = (
            int(own.sum()),
            brute_majority(labels[own]),
            names.get(brute_majority(atlas[own])),
        )
    sizes = [lesion.voxels for lesion in result.lesions]
    assert sizes == sorted(sizes, reverse=True)
    for lesion in result.lesions:
        key = tuple(np.round(lesion.centroid_ijk, 6))
        assert by_centroid[key] == (lesion.voxels, lesion.label, lesion.region)
