"""Agreement with an independent implementation (MONAI) and with the real ISLES'22 mask."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from autoseg.data.io import read_volume
from autoseg.evaluation.lesions import count_lesions
from autoseg.evaluation.metrics import evaluate_case

ISLES_MASK = Path(
    "isles22_sample/derivatives/sub-strokecase0009/ses-0001/sub-strokecase0009_ses-0001_msk.nii.gz"
)
BLOB_SHAPE = (14, 24, 20)


def _blob(seed: int, threshold: float = 0.53) -> np.ndarray:
    """A random smooth blob (several components), never empty for the seeds used."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(BLOB_SHAPE), 2.0)
    return field > threshold


def _monai_values(reference: np.ndarray, prediction: np.ndarray, spacing: tuple) -> list[float]:
    """Dice, HD95 and ASSD from MONAI for one binary pair (one-hot, batch of one)."""
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    y = torch.from_numpy(reference[None, None].astype(np.float32))
    y_pred = torch.from_numpy(prediction[None, None].astype(np.float32))
    dice = metrics.DiceMetric(include_background=True, reduction="none")(y_pred, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = metrics.compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=list(spacing)
        )
        assd = metrics.compute_average_surface_distance(
            y_pred, y, include_background=True, symmetric=True, spacing=list(spacing)
        )
    return [float(dice), float(hd95), float(assd)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_monai_on_random_blobs(seed: int) -> None:
    pytest.importorskip("monai")
    reference, prediction = _blob(seed), _blob(seed + 100)
    assert reference.any() and prediction.any()
    spacing = (3.0, 0.8, 1.1)
    ours = evaluate_case(reference, prediction, spacing)
    expected = _monai_values(reference, prediction, spacing)
    got = [ours["dice"], ours["hd95_mm"], ours["assd_mm"]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture
def isles_mask(realdata_dir: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    path = realdata_dir / ISLES_MASK
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    mask, meta = read_volume(path)
    return mask > 0, meta.spacing_mm


def test_isles_mask_lesion_counts(isles_mask: tuple[np.ndarray, tuple[float, ...]]) -> None:
    mask, _ = isles_mask
    full = ndimage.generate_binary_structure(3, 3)
    # Numbers checked with scipy.ndimage.label (26- and 6-connectivity) when written.
    assert ndimage.label(mask, structure=full)[1] == 18
    assert ndimage.label(mask)[1] == 21
    assert count_lesions(mask, mask, 26).reference_lesions == 18
    assert count_lesions(mask, mask, 6).reference_lesions == 21
    assert int(mask.sum()) == 523


def test_isles_mask_against_itself(isles_mask: tuple[np.ndarray, tuple[float, ...]]) -> None:
    mask, spacing = isles_mask
    metrics = evaluate_case(mask, mask, spacing)
    assert metrics["dice"] == metrics["lesion_f1"] == 1.0
    assert metrics["hd95_mm"] == metrics["assd_mm"] == 0.0


def test_isles_mask_shifted_and_eroded(isles_mask: tuple[np.ndarray, tuple[float, ...]]) -> None:
    mask, spacing = isles_mask
    prediction = ndimage.binary_erosion(np.roll(mask, 2, axis=1))
    metrics = evaluate_case(mask, prediction, spacing)
    # Values confirmed with MONAI 1.6.1 (compute_hausdorff_distance, percentile=95, and
    # compute_average_surface_distance, symmetric) when written; spacing is ~2 mm.
    assert metrics["hd95_mm"] == pytest.approx(24.78667, rel=1e-5)
    assert metrics["assd_mm"] == pytest.approx(6.302696, rel=1e-5)
    assert metrics["abs_volume_diff_voxels"] == 402.0
    assert metrics["abs_volume_diff_ml"] == pytest.approx(402 * 8.0 / 1000, rel=1e-6)
    assert metrics["lesion_f1"] == pytest.approx(3 / 11)


def test_isles_mask_matches_monai(isles_mask: tuple[np.ndarray, tuple[float, ...]]) -> None:
    pytest.importorskip("monai")
    mask, spacing = isles_mask
    prediction = np.roll(mask, (1, -2), axis=(0, 2))
    ours = evaluate_case(mask, prediction, spacing)
    expected = _monai_values(mask, prediction, spacing)
    got = [ours["dice"], ours["hd95_mm"], ours["assd_mm"]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
