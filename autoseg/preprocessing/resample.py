"""Resample volumes to a target spacing, one axis at a time.

Tensor-product spline interpolation (what ``scipy.ndimage.map_coordinates`` does in 3D) is
separable: the prefilter and the evaluation both factor over axes. So a 3D resampling equals
three 1D resamplings, and each 1D resampling of a whole volume is one matrix product with a
small ``(n_out, n_in)`` interpolation matrix. BLAS does that far faster than evaluating
64 cubic taps per output voxel, with the same result, and lets each axis get its own order
(the thick axis of anisotropic data is resampled with nearest neighbour so slices are never
blended).

Grids are aligned on voxel centres of the field of view: output voxel ``o`` sits at input
coordinate ``(o + 0.5) * n_in / n_out - 0.5``, so resampling keeps the physical extent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

Shape3 = tuple[int, int, int]


def target_shape(
    shape: Sequence[int], spacing_mm: Sequence[float], target_spacing_mm: Sequence[float]
) -> Shape3:
    """``round(shape * spacing / target_spacing)`` per axis, at least 1."""
    return tuple(
        max(1, round(n * s / t))
        for n, s, t in zip(shape, spacing_mm, target_spacing_mm, strict=True)
    )


def _single_thick_axis(spacing_mm: Sequence[float], threshold: float) -> int | None:
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    thick = np.flatnonzero(spacing > threshold * spacing.min())
    return int(thick[0]) if len(thick) == 1 else None


def thick_axis(
    spacing_mm: Sequence[float], target_spacing_mm: Sequence[float], threshold: float = 3.0
) -> int | None:
    """The one axis to resample with nearest neighbour, or None for isotropic-enough data.

    The source spacing decides first (thick-slice scans: in-plane detail must not be blended
    across slices 5 mm apart); if the source is isotropic but the target is not, the target's
    thick axis is used, since each output slice then stands for a thick slab.
    """
    axis = _single_thick_axis(spacing_mm, threshold)
    return axis if axis is not None else _single_thick_axis(target_spacing_mm, threshold)


def axis_orders(order: int, thick: int | None) -> Shape3:
    """Per-axis interpolation orders: ``order`` everywhere except 0 on the thick axis."""
    return tuple(0 if axis == thick else order for axis in range(3))


def source_coordinates(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinates of the ``n_out`` output voxel centres (centre-aligned grids)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


@lru_cache(maxsize=256)
def interpolation_matrix(n_in: int, n_out: int, order: int) -> np.ndarray:
    """The ``(n_out, n_in)`` float32 matrix of 1D spline interpolation of ``order`` (1 or 3).

    Column ``j`` is the interpolation of the unit vector ``e_j``, so it includes the spline
    prefilter exactly as ``map_coordinates(..., mode="reflect")`` applies it.
    """
    coords = source_coordinates(n_in, n_out)[None]
    matrix = np.empty((n_out, n_in), dtype=np.float64)
    unit = np.zeros(n_in, dtype=np.float64)
    for j in range(n_in):
        unit[j] = 1.0
        matrix[:, j] = ndimage.map_coordinates(unit, coords, order=order, mode="reflect")
        unit[j] = 0.0
    result = matrix.astype(np.float32)
    result.flags.writeable = False
    return result


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Index of the nearest input voxel for each output voxel (order 0)."""
    return np.clip(np.floor(source_coordinates(n_in, n_out) + 0.5), 0, n_in - 1).astype(np.intp)


def _resample_axis(volume: np.ndarray, axis: int, n_out: int, order: int) -> np.ndarray:
    n_in = volume.shape[axis]
    if order == 0:
        return np.take(volume, nearest_indices(n_in, n_out), axis=axis)
    matrix = interpolation_matrix(n_in, n_out, order)
    # Each branch is a single large GEMM: stacked small products are several times slower.
    if axis == 0:
        return (matrix @ volume.reshape(n_in, -1)).reshape(n_out, *volume.shape[1:])
    if axis == 1:
        return np.tensordot(matrix, volume, axes=(1, 1)).transpose(1, 0, 2)
    flat = volume.reshape(-1, n_in) @ matrix.T
    return flat.reshape(*volume.shape[:2], n_out)


def resample_volume(
    volume: np.ndarray, out_shape: Sequence[int], orders: Sequence[int]
) -> np.ndarray:
    """Resample one ``(Z, Y, X)`` volume to ``out_shape`` with a spline order per axis.

    Axes that shrink most are done first, so the later products work on less data. Axes whose
    length does not change are left alone (no smoothing at the same spacing).

    Args:
        volume: ``(Z, Y, X)`` array, any real dtype (computed in float32).
        out_shape: ``(z, y, x)`` voxel counts of the result.
        orders: spline order per axis: 0 (nearest), 1 (linear) or 3 (cubic).

    Returns:
        float32 ``(z, y, x)`` array.
    """
    result = np.asarray(volume, dtype=np.float32)
    ratios = [out_shape[a] / result.shape[a] for a in range(3)]
    for axis in sorted(range(3), key=lambda a: (ratios[a], a)):
        if result.shape[axis] != out_shape[axis]:
            result = _resample_axis(result, axis, int(out_shape[axis]), int(orders[axis]))
    return np.ascontiguousarray(result)


def resample_image(
    data: np.ndarray, out_shape: Sequence[int], thick: int | None = None, order: int = 3
) -> np.ndarray:
    """Resample image channels ``(C, Z, Y, X)``: cubic, nearest along the thick axis.

    Channels are done one at a time so the working memory stays at a few volumes.
    """
    orders = axis_orders(order, thick)
    out = np.empty((data.shape[0], *out_shape), dtype=np.float32)
    for channel in range(data.shape[0]):
        out[channel] = resample_volume(data[channel], out_shape, orders)
    return out


def resample_labels(
    labels: np.ndarray, out_shape: Sequence[int], thick: int | None = None
) -> np.ndarray:
    """Resample a label map ``(Z, Y, X)`` via per-class linear interpolation, then argmax.

    Interpolating each class's indicator separately keeps thin lesions that nearest-neighbour
    resampling would drop or shift; a running argmax keeps memory at two volumes whatever the
    number of classes. Ties go to the lower class, as ``np.argmax`` would.

    Returns:
        int8 ``(z, y, x)`` labels (values of ``labels``, which must fit int8).
    """
    if tuple(labels.shape) == tuple(out_shape):
        return labels.astype(np.int8, copy=True)
    classes = np.flatnonzero(np.bincount((labels.astype(np.int16) + 1).ravel())) - 1
    if len(classes) == 1:
        return np.full(tuple(out_shape), classes[0], dtype=np.int8)
    if len(classes) == 2:
        # Two classes: argmax of (1 - p, p) is p > 0.5, one resampling instead of two.
        share = resample_volume(labels == classes[1], out_shape, axis_orders(1, thick))
        return np.where(share > 0.5, classes[1], classes[0]).astype(np.int8)
    indicators = ((value, (labels == value).astype(np.float32)) for value in classes)
    return argmax_resampled(indicators, out_shape, axis_orders(1, thick))


def argmax_resampled(
    channels: Iterable[tuple[int, np.ndarray]], out_shape: Sequence[int], orders: Sequence[int]
) -> np.ndarray:
    """Resample ``(value, volume)`` pairs one at a time and keep, per voxel, the value whose
    resampled volume is largest (first wins ties, like ``np.argmax``).

    Memory stays at two output volumes however many classes there are.

    Returns:
        int8 ``(z, y, x)`` array of the winning values.
    """
    best_value = np.full(tuple(out_shape), -np.inf, dtype=np.float32)
    best_class = np.zeros(tuple(out_shape), dtype=np.int8)
    for value, volume in channels:
        resampled = resample_volume(volume, out_shape, orders)
        better = resampled > best_value
        best_value[better] = resampled[better]
        best_class[better] = value
    return best_class
