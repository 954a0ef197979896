"""autoseg_verify on the real ISLES'22 case: float noise passes, a FLAIR off-grid fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autoseg.data.io import read_meta
from autoseg.data.verify import format_report, verify_dataset

ISLES_CASE = "sub-strokecase0009/ses-0001/sub-strokecase0009_ses-0001"


def isles_dataset(root: Path, realdata_dir: Path, second_channel: str) -> Path:
    """One ISLES'22 case as a raw dataset of symlinks: DWI + ``second_channel``, mask."""
    sample = realdata_dir / "isles22_sample"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    links = {
        "imagesTr/isles_0000.nii.gz": sample / "rawdata" / f"{ISLES_CASE}_dwi.nii.gz",
        "imagesTr/isles_0001.nii.gz": sample / "rawdata" / f"{ISLES_CASE}_{second_channel}.nii.gz",
        "labelsTr/isles.nii.gz": sample / "derivatives" / f"{ISLES_CASE}_msk.nii.gz",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    payload = {
        "name": "ISLES",
        "channel_names": {"0": "DWI", "1": second_channel.upper()},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(payload))
    return root


def test_isles22_dwi_adc_mask_passes(tmp_path: Path, realdata_dir: Path) -> None:
    root = isles_dataset(tmp_path / "ISLES", realdata_dir, "adc")
    dwi = read_meta(root / "imagesTr" / "isles_0000.nii.gz")
    mask = read_meta(root / "labelsTr" / "isles.nii.gz")
    # The case is a real test of the tolerance: other codes, affines apart by float noise.
    assert (mask.qform_code, mask.sform_code) != (dwi.qform_code, dwi.sform_code)
    assert 0 < np.max(np.abs(mask.affine_array - dwi.affine_array)) < 1e-6
    report = verify_dataset(root, num_processes=1, progress=False)
    assert report.errors == [] and report.warnings == []
    assert format_report(report) == "ISLES: 1 training case, 0 test cases: 0 errors, 0 warnings"


def test_isles22_flair_on_its_own_grid_fails(tmp_path: Path, realdata_dir: Path) -> None:
    root = isles_dataset(tmp_path / "ISLES", realdata_dir, "flair")
    [line] = verify_dataset(root, num_processes=1, progress=False).errors
    assert line == (
        f"{root / 'imagesTr' / 'isles_0001.nii.gz'}: not on the grid of isles_0000.nii.gz: "
        "spacing [5.0, 0.4492, 0.4492] != [2.0, 2.0, 2.0] mm (z, y, x); "
        "shape [29, 512, 512] != [73, 112, 112] (z, y, x) "
        f"(links to {realdata_dir.resolve()}/isles22_sample/rawdata/{ISLES_CASE}_flair.nii.gz)"
    )
