"""Fingerprint values on the tiny dataset, checked against hand-computed numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autoseg.core.atomic import read_json
from autoseg.data.io import read_volume
from autoseg.data.layout import RawDataset
from autoseg.planning.case_stats import bounding_box, channel_modality
from autoseg.planning.fingerprint import CASES_FOLDER, compute_fingerprint, write_fingerprint

VOXEL_ML = 3.0 * 1.5 * 1.25 / 1000.0  # tiny_meta spacing (z, y, x)
LESION_VOXELS = [3 * 4 * 4, 3 * 3 * 4, 3 * 2 * 4]  # label[2:5, 3 + i % 3 : 7, 2:6]


def test_fingerprint_matches_hand_computed_values(tiny_dataset: Path) -> None:
    fp = compute_fingerprint(RawDataset.open(tiny_dataset), 1, progress=False)
    assert fp["num_cases"] == 3
    assert fp["spacing_mm"]["median"] == [3.0, 1.5, 1.25]
    assert fp["shape"]["median"] == [8, 12, 10]
    volumes = [case["lesions"]["volume_ml"] for case in fp["cases"]]
    assert volumes == pytest.approx([n * VOXEL_ML for n in LESION_VOXELS])
    percents = [case["lesions"]["percent_of_brain"] for case in fp["cases"]]
    assert percents == pytest.approx([100 * n / 960 for n in LESION_VOXELS])
    assert [case["lesions"]["num_lesions"] for case in fp["cases"]] == [1, 1, 1]
    assert fp["label_frequencies"]["1"] == pytest.approx(sum(LESION_VOXELS) / (3 * 960))
    assert fp["lesions"]["largest_ml"] == pytest.approx(48 * VOXEL_ML)
    assert fp["channels"][0]["modality"] == "MR"


def test_per_case_intensities_match_numpy(tiny_dataset: Path) -> None:
    fp = compute_fingerprint(RawDataset.open(tiny_dataset), 1, progress=False)
    image, _ = read_volume(tiny_dataset / "imagesTr" / "case001_0000.nii.gz")
    label, _ = read_volume(tiny_dataset / "labelsTr" / "case001.nii.gz")
    values = image[label > 0].astype(np.float64)
    stats = fp["cases"][1]["channels"][0]["foreground"]
    assert stats["count"] == 36
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-5)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-5)
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(values, 99.5), rel=1e-5)


def test_crop_box_and_two_lesions() -> None:
    from autoseg.planning.case_stats import case_statistics

    image = np.zeros((1, 6, 8, 8), np.float32)
    image[0, 1:5, 2:7, 1:6] = 5.0
    label = np.zeros((6, 8, 8), np.int16)
    label[1, 2, 1] = 1
    label[3:5, 5:7, 4:6] = 1  # 8 voxels, not touching the first (26-connectivity)
    stats = case_statistics("x", image, label, (2.0, 1.0, 1.0), [0, 1])
    assert stats["shape_after_crop"] == [4, 5, 5]
    assert stats["lesions"]["num_lesions"] == 2
    assert stats["lesions"]["smallest_ml"] == pytest.approx(0.002)
    assert stats["lesions"]["largest_ml"] == pytest.approx(0.016)
    assert bounding_box(np.zeros((2, 3, 4), bool)) == [[0, 2], [0, 3], [0, 4]]


@pytest.mark.parametrize(
    ("name", "minimum", "modality"),
    [("CT", 0.0, "CT"), ("NCCT", 0.0, "CT"), ("T1", -1000.0, "CT"), ("DWI", -10.0, "MR")],
)
def test_modality_from_name_or_intensity(name: str, minimum: float, modality: str) -> None:
    assert channel_modality(name, minimum) == modality


def test_parallel_equals_serial(tiny_dataset: Path) -> None:
    raw = RawDataset.open(tiny_dataset)
    assert compute_fingerprint(raw, 2, progress=False) == compute_fingerprint(raw, 1, False)


def test_resume_reuses_cached_cases_and_redoes_changed_ones(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    raw = RawDataset.open(tiny_dataset)
    write_fingerprint(raw, tmp_path / "pre", 1, progress=False)
    cache = tmp_path / "pre" / "Tiny" / CASES_FOLDER
    for case_id in ("case000", "case001"):
        payload = read_json(cache / f"{case_id}.json")
        payload["brain_voxels"] = 12345  # a marker only a reused cache file can carry
        (cache / f"{case_id}.json").write_text(__import__("json").dumps(payload))
    image = tiny_dataset / "imagesTr" / "case001_0000.nii.gz"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fp = write_fingerprint(raw, tmp_path / "pre", 1, progress=False)
    assert [case["brain_voxels"] for case in fp["cases"]] == [12345, 960, 960]
    assert (tmp_path / "pre" / "Tiny" / "fingerprint.json").is_file()
