"""Overlay slice choice, orientation, lesion-wise errors and ``draw_overlay``'s PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import write_label, write_volume
from autoseg.reporting.lesions import lesion_errors
from autoseg.reporting.overlay import (
    DPI,
    PANEL_INCHES,
    CaseVolumes,
    axial_view,
    case_figure,
    display_flips,
    draw_overlay,
    figure_size_inches,
    lesion_slices,
    zoom_box,
)
from tests.conftest import tiny_meta
from tests.reporting.helpers import SHAPE, SPACING, big_lesion


def test_slice_goes_through_the_largest_reference_lesion() -> None:
    reference = big_lesion()
    reference[1:3, 0:2, 0:2] = 1  # a smaller lesion elsewhere
    prediction = np.zeros(SHAPE, np.uint8)
    prediction[2, 10:16, 0:6] = 1  # a larger prediction must not steer the choice
    assert lesion_slices(reference, prediction, count=1) == [6]
    # areas 9, 49, 25 at z 5, 6, 7: the 25th / 75th percentile depths are 6 and 7
    assert lesion_slices(reference, prediction, count=3) == [6, 7]


def test_slice_falls_back_to_prediction_then_middle() -> None:
    empty = np.zeros(SHAPE, np.uint8)
    prediction = np.zeros(SHAPE, np.uint8)
    prediction[2, 3:8, 3:8] = 1
    prediction[8, 0:1, 0:1] = 1
    assert lesion_slices(empty, prediction, count=1) == [2]
    assert lesion_slices(None, prediction, count=1) == [2]
    assert lesion_slices(empty, empty) == [SHAPE[0] // 2]


def test_ras_volume_is_shown_anterior_up_patient_right_on_the_left() -> None:
    volume = np.zeros((1, 3, 4))
    volume[0, 0, 0] = 1.0  # most posterior, most left voxel in a RAS-aligned image
    flips = display_flips(tiny_meta((1, 3, 4), (1.0, 1.0, 1.0)))
    view = axial_view(volume, 0, flips)
    assert flips == (True, True)
    assert view[-1, -1] == 1.0  # posterior at the bottom, patient left on the right


def test_lps_arrays_from_png_slices_keep_their_layout() -> None:
    meta = tiny_meta((1, 3, 4), (5.0, 0.5, 0.5))
    lps = meta.__class__(meta.shape, meta.spacing_mm, ((-0.5, 0, 0, 0), (0, -0.5, 0, 0),
                         (0, 0, 5.0, 0), (0, 0, 0, 1)))  # fmt: skip
    assert display_flips(lps) == (False, False)


def test_lesion_errors_list_misses_and_false_positives_with_volume_and_centroid() -> None:
    reference = np.zeros(SHAPE, np.uint8)
    reference[1:3, 1:3, 1:3] = 1  # missed: 8 voxels
    reference[5:7, 8:10, 8:10] = 1  # found
    prediction = np.zeros(SHAPE, np.uint8)
    prediction[6, 9, 9] = 1
    prediction[8, 12:15, 0:1] = 1  # false positive: 3 voxels
    misses, extras = lesion_errors(reference, prediction, SPACING)
    assert [(m.voxels, m.centroid_zyx) for m in misses] == [(8, (1.5, 1.5, 1.5))]
    assert misses[0].volume_ml == pytest.approx(8 * 3.0 / 1000)
    assert [(e.voxels, e.centroid_zyx) for e in extras] == [(3, (8.0, 13.0, 0.0))]


def test_diagonal_neighbours_are_one_lesion() -> None:
    reference = np.zeros(SHAPE, np.uint8)
    reference[1, 1, 1] = reference[2, 2, 2] = 1  # 26-connected, not 6-connected
    misses, _ = lesion_errors(reference, np.zeros(SHAPE, np.uint8), SPACING)
    assert len(misses) == 1 and misses[0].voxels == 2


@pytest.fixture
def case_files(tmp_path: Path) -> dict[str, Path]:
    meta = tiny_meta(SHAPE, SPACING)
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("image", "pred", "ref", "unc")}
    write_volume(paths["image"], np.random.default_rng(0).random(SHAPE, np.float32), meta)
    write_label(paths["ref"], big_lesion(), meta)
    write_label(paths["pred"], np.roll(big_lesion(), 1, axis=1), meta)
    write_volume(paths["unc"], big_lesion().astype(np.float32) * 0.5, meta)
    return paths


def expected_pixels(panels: int) -> tuple[int, int]:
    width, height = figure_size_inches(tiny_meta(SHAPE, SPACING), panels)
    return round(width * DPI), round(height * DPI)


def test_draw_overlay_writes_png_of_expected_size(case_files: dict, tmp_path: Path) -> None:
    out = draw_overlay(case_files["image"], case_files["pred"], tmp_path / "o.png",
                       reference_path=case_files["ref"])  # fmt: skip
    size = Image.open(out).size
    assert size == expected_pixels(2)  # slices 6 and 7 through the lesion
    assert size[0] == round(2 * PANEL_INCHES * DPI)
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 100) & (pixels[..., 2] < 100)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert green.sum() > 50 and red.sum() > 50  # both outlines are drawn


def test_draw_overlay_one_slice_with_uncertainty(case_files: dict, tmp_path: Path) -> None:
    out = draw_overlay(case_files["image"], case_files["pred"], tmp_path / "o.png",
                       slice_index=0, uncertainty_path=case_files["unc"])  # fmt: skip
    assert Image.open(out).size == expected_pixels(2)
    assert list(tmp_path.glob(".partial-*")) == []


def test_draw_overlay_rejects_bad_slice_and_shape(case_files: dict, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"slice 10 outside 0\.\.9"):
        draw_overlay(case_files["image"], case_files["pred"], tmp_path / "o.png", slice_index=10)
    other = tmp_path / "other.nii.gz"
    write_label(other, np.zeros((4, 4, 4), np.uint8), tiny_meta((4, 4, 4)))
    with pytest.raises(InvalidInputError, match=r"other\.nii\.gz: prediction shape"):
        draw_overlay(case_files["image"], other, tmp_path / "o.png")


def test_zoom_box_frames_a_small_lesion_and_skips_a_large_one() -> None:
    mask = np.zeros((100, 100), bool)
    mask[48:52, 60:64] = True  # 4 mm lesion: a window of 2 x 15 mm (the minimum) + 1
    assert zoom_box(mask, (1.0, 1.0)) == (slice(34, 65), slice(46, 77))
    mask[:] = False
    mask[10:90, 10:90] = True
    assert zoom_box(mask, (1.0, 1.0)) is None
    assert zoom_box(np.zeros((100, 100), bool), (1.0, 1.0)) is None


def test_case_figure_adds_zoom_and_uncertainty_panels() -> None:
    shape = (4, 96, 96)
    reference = np.zeros(shape, np.uint8)
    reference[2, 40:44, 50:54] = 1
    case = CaseVolumes(
        image=np.random.default_rng(0).random(shape, np.float32),
        prediction=reference.copy(),
        reference=reference,
        uncertainty=np.zeros(shape, np.float32),
        meta=tiny_meta(shape, (5.0, 1.0, 1.0)),
    )
    figure = case_figure(case, lesion_slices(case.reference, case.prediction), "t")
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["z = 2", "zoom, z = 2", "uncertainty, z = 2"]
