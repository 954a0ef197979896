"""Surface distances between two binary masks: HD95 and ASSD in millimetres.

Surface definition (the same as MONAI's ``get_mask_edges`` without sub-voxel areas, so
the two agree exactly): the boundary of a mask is the mask minus its binary erosion with a
face-connectivity structuring element (6-neighbourhood in 3D, 4 in 2D), with everything
outside the array counted as background. So a boundary voxel is a foreground voxel with at
least one face neighbour in the background or outside the image.

Distances are exact Euclidean distances in mm between boundary voxel centres: the same
values as ``scipy.ndimage.distance_transform_edt(~target_boundary, sampling=spacing_mm)``
read at the source boundary voxels, found with a k-d tree over the boundary coordinates
scaled by the spacing because its cost grows with the surface, not the volume (a
120x140x110 voxel lesion takes ~0.3 s instead of ~0.8 s). Both masks are cropped to the
bounding box of their union plus a one-voxel margin first: every boundary voxel lies inside
that box, so the distances are unchanged and the erosion touches only that box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

HD_PERCENTILE = 95.0


def union_crop(
    reference: np.ndarray, prediction: np.ndarray, margin: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union, grown by ``margin`` voxels.

    Args:
        reference: boolean mask, shape ``(Z, Y, X)`` or ``(Y, X)``.
        prediction: boolean mask of the same shape.
        margin: voxels kept around the box (clipped at the array's edge).

    Returns:
        The two cropped masks (views), or two empty-shaped arrays when both are empty.
    """
    union = reference | prediction
    if not union.any():
        nothing = tuple(slice(0, 0) for _ in union.shape)
        return reference[nothing], prediction[nothing]
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other_axes))
        box.append(slice(max(hits[0] - margin, 0), hits[-1] + 1 + margin))
    box = tuple(box)
    return reference[box], prediction[box]


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a boolean mask (mask minus its face-connectivity erosion).

    The image border counts as background (``border_value=0``), so a mask touching the
    edge of the array has a boundary there, as in MONAI.
    """
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def directed_distances(
    source_boundary: np.ndarray, target_boundary: np.ndarray, spacing_mm: Sequence[float]
) -> np.ndarray:
    """Distance in mm from every source boundary voxel to the nearest target boundary voxel.

    Args:
        source_boundary: boolean boundary mask; one distance per True voxel.
        target_boundary: boolean boundary mask with at least one True voxel.
        spacing_mm: voxel size per axis, in the arrays' axis order.

    Returns:
        1D float64 array of distances, in C order of the source voxels.
    """
    scale = np.asarray(spacing_mm, dtype=np.float64)
    target_points = np.argwhere(target_boundary) * scale
    source_points = np.argwhere(source_boundary) * scale
    return cKDTree(target_points).query(source_points, k=1)[0]


def surface_distances(
    reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both directed boundary-distance sets, or None when either mask is empty.

    Returns:
        ``(prediction -> reference, reference -> prediction)`` distances in mm.
    """
    reference, prediction = union_crop(reference.astype(bool), prediction.astype(bool))
    if not reference.any() or not prediction.any():
        return None
    reference_boundary, prediction_boundary = boundary(reference), boundary(prediction)
    return (
        directed_distances(prediction_boundary, reference_boundary, spacing_mm),
        directed_distances(reference_boundary, prediction_boundary, spacing_mm),
    )


def hd95_and_assd(
    reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[float, float]:
    """The 95th-percentile Hausdorff distance and the average symmetric surface distance.

    HD95 is the larger of the two directed 95th percentiles (linear interpolation, as
    ``numpy.percentile`` and MONAI's ``compute_hausdorff_distance(percentile=95)``).
    ASSD is the mean of all boundary distances of both directions pooled together (each
    boundary voxel of either mask counts once), as MONAI's
    ``compute_average_surface_distance(symmetric=True)``.

    Empty conventions: both masks empty -> ``(0.0, 0.0)`` (the surfaces agree); exactly one
    empty -> ``(nan, nan)`` (no distance exists). Summaries skip NaN and report how many
    cases had a finite value.

    Args:
        reference: binary mask, ``(Z, Y, X)`` or ``(Y, X)``.
        prediction: binary mask of the same shape.
        spacing_mm: voxel size per axis (``(z, y, x)`` or ``(y, x)``) in mm.
    """
    reference, prediction = reference.astype(bool), prediction.astype(bool)
    has_reference, has_prediction = bool(reference.any()), bool(prediction.any())
    if not has_reference and not has_prediction:
        return 0.0, 0.0
    distances = surface_distances(reference, prediction, spacing_mm)
    if distances is None:
        return float("nan"), float("nan")
    hd95 = max(float(np.percentile(d, HD_PERCENTILE)) for d in distances)
    assd = float(np.concatenate(distances).mean())
    return hd95, assd
