"""Per-channel intensity normalisation and optional N4 bias-field correction.

CT intensities are physical (Hounsfield units), so one dataset-wide clip and z-score keeps
them comparable across scans. MR intensities are arbitrary per scan, so each image is
z-scored on its own, inside the brain only (the zero background would otherwise dominate
the statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from autoseg.plans.preprocessing import ChannelNormalization

EPSILON = 1e-8


def _zscore(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((values - mean) / max(std, EPSILON)).astype(np.float32)


def _zscore_inside(channel: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Z-score with the statistics inside ``mask``; 0 outside it (whole image if empty)."""
    if mask is None or not mask.any():
        return _zscore(channel, float(channel.mean(dtype=np.float64)), float(channel.std()))
    inside = channel[mask]
    out = np.zeros(channel.shape, dtype=np.float32)
    out[mask] = _zscore(inside, float(inside.mean(dtype=np.float64)), float(inside.std()))
    return out


def _rescale_0_1(channel: np.ndarray) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    return ((channel - low) / max(high - low, EPSILON)).astype(np.float32)


def normalize_channel(
    channel: np.ndarray, spec: ChannelNormalization, mask: np.ndarray | None = None
) -> np.ndarray:
    """Normalise one channel ``(Z, Y, X)`` as ``spec`` says; returns float32.

    Args:
        channel: intensities of one image channel.
        spec: the scheme and, for ``ct``, the dataset's clip range and statistics.
        mask: the brain / body mask ``(Z, Y, X)`` used by ``zscore_brain``.
    """
    channel = np.asarray(channel, dtype=np.float32)
    if spec.scheme == "ct":
        clipped = np.clip(channel, spec.clip_low, spec.clip_high)
        return _zscore(clipped, spec.mean, spec.std)
    if spec.scheme == "zscore_brain":
        return _zscore_inside(channel, mask)
    if spec.scheme == "zscore":
        return _zscore_inside(channel, None)
    if spec.scheme == "rescale_0_1":
        return _rescale_0_1(channel)
    return channel.copy()


def normalize(
    data: np.ndarray, specs: Sequence[ChannelNormalization], mask: np.ndarray | None = None
) -> np.ndarray:
    """Normalise every channel of ``data (C, Z, Y, X)``; one spec per channel."""
    if len(specs) != data.shape[0]:
        raise ValueError(f"{len(specs)} normalisation entries for {data.shape[0]} channels")
    out = np.empty(data.shape, dtype=np.float32)
    for index, spec in enumerate(specs):
        out[index] = normalize_channel(data[index], spec, mask)
    return out


def n4_correct(
    channel: np.ndarray,
    spacing_mm: Sequence[float],
    mask: np.ndarray | None = None,
    shrink: int = 4,
    iterations: Sequence[int] = (50, 50, 30),
) -> np.ndarray:
    """Remove a smooth multiplicative bias field from an MR channel ``(Z, Y, X)`` (N4).

    The field is fitted on a copy shrunk by ``shrink`` per axis (the field is smooth, so this
    loses nothing and is ~``shrink**3`` times faster), then evaluated at full resolution and
    divided out. Negative intensities are shifted up first because N4 works on log values.

    Args:
        channel: intensities ``(Z, Y, X)``.
        spacing_mm: voxel size ``(z, y, x)``; the B-spline field lives in physical space.
        mask: voxels to fit on (the brain); everything when None.
        shrink: shrink factor per axis for the fit (clamped so no axis drops below 4 voxels).
        iterations: iterations per fitting level.

    Returns:
        float32 corrected channel, same shape.
    """
    values = np.asarray(channel, dtype=np.float32)
    # ITK cannot fit a 3D field across a single slice: fit in 2D (or 1D) over the real axes.
    kept = [axis for axis in range(values.ndim) if values.shape[axis] > 1]
    offset = float(min(values.min(), 0.0))
    image = sitk.GetImageFromArray(values.squeeze() - offset + 1.0)
    image.SetSpacing([float(spacing_mm[axis]) for axis in kept[::-1]])
    mask_array = np.ones(values.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    mask_image = sitk.GetImageFromArray(mask_array.squeeze())
    mask_image.CopyInformation(image)
    factors = [max(1, min(shrink, n // 4)) for n in image.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(v) for v in iterations])
    corrector.Execute(sitk.Shrink(image, factors), sitk.Shrink(mask_image, factors))
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image))
    corrected = (values - offset + 1.0) / np.exp(log_field).reshape(values.shape)
    return (corrected + offset - 1.0).astype(np.float32)


def n4_correct_channels(
    data: np.ndarray,
    specs: Sequence[ChannelNormalization],
    spacing_mm: Sequence[float],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """N4-correct every non-CT channel of ``data (C, Z, Y, X)`` (CT has no bias field)."""
    out = np.asarray(data, dtype=np.float32).copy()
    for index, spec in enumerate(specs):
        if spec.scheme != "ct":
            out[index] = n4_correct(out[index], spacing_mm, mask)
    return out
