"""The contralateral channel: the left-right axis from the affine, the midline from the head
mask, and the mirrored copy a one-sided lesion lacks."""

from __future__ import annotations

import numpy as np

from autoseg.data.records import ImageMeta
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.case import preprocess_arrays
from autoseg.preprocessing.contralateral import left_right_axis, midline, mirrored
from tests.conftest import tiny_meta


def test_the_left_right_axis_is_read_off_the_affine() -> None:
    assert left_right_axis(np.diag([2.0, 2.0, 2.0, 1.0])) == 2  # i runs along x: array axis 2
    sagittal_first = [[0, 0, -1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]
    assert left_right_axis(sagittal_first) == 0  # k runs along x: array axis 0
    oblique = [[0.3, 0.1, 0.95, 0], [0.95, 0, -0.3, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]]
    assert left_right_axis(oblique) == 0


def test_the_midline_is_the_head_mask_centre_and_mirroring_reflects_across_it() -> None:
    mask = np.zeros((1, 1, 10), bool)
    mask[..., 2:7] = True  # a head over indices 2..6: midline at 4
    assert midline(mask, 2) == 4.0
    data = np.arange(10, dtype=np.float32).reshape(1, 1, 1, 10)
    np.testing.assert_array_equal(mirrored(data, 2, 4.0)[0, 0, 0], [8, 7, 6, 5, 4, 3, 2, 1, 0, 0])
    np.testing.assert_array_equal(mirrored(data, 2, 4.5)[0, 0, 0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert midline(np.zeros((3, 4, 5), bool), 1) == 1.5


def test_a_one_sided_lesion_has_no_twin_in_the_contralateral_channel() -> None:
    """A left-right symmetric head off the array's centre, with a dark lesion on one side:
    the contralateral channel holds the head's own mirror image, so the symmetric tissue
    matches voxel by voxel and only the lesion (and its healthy twin) differ."""
    meta: ImageMeta = tiny_meta((12, 14, 24), (1.0, 1.0, 1.0))
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in meta.shape], indexing="ij")
    head = ((z - 5.5) / 5) ** 2 + ((y - 6.5) / 6) ** 2 + ((x - 9.0) / 7) ** 2 < 1  # midline x=9
    image = np.where(head, 100.0 + 20.0 * np.cos((x - 9.0) / 2.0), 0.0).astype(np.float32)
    image[5:7, 6:8, 12:14] = 40.0  # the lesion, right of the midline
    spec = PreprocessingSpec(
        spacing_mm=(1.0, 1.0, 1.0),
        normalization=(ChannelNormalization("zscore_brain"),),
        crop_to_nonzero=False,
        contralateral=True,
    )
    assert spec.network_channels == 2 and "contralateral" in spec.to_json()
    data = preprocess_arrays(image[None], meta, spec).data
    assert data.shape == (2, *meta.shape)
    differs = np.abs(data[0] - data[1]) > 1e-3
    lesion_and_twin = np.zeros(meta.shape, bool)
    lesion_and_twin[5:7, 6:8, 12:14] = lesion_and_twin[5:7, 6:8, 5:7] = True
    np.testing.assert_array_equal(differs, lesion_and_twin)
    plain = PreprocessingSpec(spacing_mm=(1.0, 1.0, 1.0), normalization=spec.normalization)
    assert "contralateral" not in plain.to_json() and plain.data_id != spec.data_id
