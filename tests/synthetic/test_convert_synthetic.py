"""Every converter accepts what the synthetic generators write (tiny size), and verify agrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.data.convert import convert
from autoseg.data.io import read_volume
from autoseg.data.layout import RawDataset
from autoseg.data.verify import verify_dataset
from autoseg.synthetic.generate import synthesize

CASES = [
    ("atlas", "bids", "atlas"),
    ("atlas", "flat", "atlas"),
    ("ct-png", "png", "png-slices"),
    ("dwi", "mixed", "npy"),
]


@pytest.mark.parametrize(("synth_kind", "layout", "convert_kind"), CASES)
def test_converts_synthetic_data(
    tmp_path: Path, synth_kind: str, layout: str, convert_kind: str
) -> None:
    source = tmp_path / "src"
    scale = 255 if synth_kind == "atlas" else 1
    synthesize(synth_kind, source, 3, 4, "tiny", layout, 1, progress=False, mask_scale=scale)
    dest = tmp_path / "raw" / "Synth"
    summary = convert(convert_kind, source, dest, progress=False, num_processes=1)
    assert (summary.training_cases, summary.test_cases) == (3, 1)
    report = verify_dataset(dest, num_processes=1, progress=False)
    assert report.errors == []
    for case in RawDataset.open(dest).training_cases():
        labels, _ = read_volume(case.label_file)
        assert set(np.unique(labels).tolist()) <= {0, 1}
