"""Lesion measurements of one label map: what a lesion table row holds (numpy/scipy/cc3d).

A lesion is a connected component of the foreground (every label > 0) under the
convention's connectivity (26 for ISLES'22, 6 for ATLAS; :mod:`.lesions`). Lesions are
numbered 1.. from the largest down. Per lesion: voxel count and volume (ml), centroid as
voxel indices ``(i, j, k)`` (NIfTI order: ``i`` the fastest file axis, i.e. array axis X)
and as world millimetres ``(x, y, z)`` through the file's affine (RAS: scanner space, or
MNI space for MNI data), the inclusive voxel bounding box, the hemisphere, the mean and
maximum foreground probability (``1 - p(background)``, calibrated when the prediction
was), the fold agreement (mean over the lesion of the fraction of ensemble members
whose label equals the final one) and, with an atlas, the region holding most of it.

Hemisphere, by the world x of the lesion's centroid against a mid-sagittal plane
``x = x0`` (RAS: larger x is the patient's right):

- ``mni_x_sign``: MNI-space data (BIDS ``space-MNI*`` or a NIfTI code 4): ``x0 = 0``;
- ``brain_midsagittal``: otherwise, ``x0`` is the world x of the centroid of the brain
  mask (the image's nonzero voxels; ISLES'22 and ATLAS are skull-stripped). This is a
  plane normal to the world x axis, not one fitted to the falx: head tilt shifts it;
- ``grid_midsagittal``: no image given: ``x0`` is the world x of the grid's centre.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autoseg.data.records import ImageMeta
from autoseg.evaluation.lesions import label_components

MNI_CODE = 4  # NIFTI_XFORM_MNI_152
HEMISPHERE_METHODS = ("mni_x_sign", "brain_midsagittal", "grid_midsagittal")


@dataclass(frozen=True)
class Lesion:
    """One lesion (connected component) of a case; coordinates as the module says."""

    lesion: int
    label: int
    voxels: int
    volume_ml: float
    centroid_ijk: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    bbox_min_ijk: tuple[int, int, int]
    bbox_max_ijk: tuple[int, int, int]
    hemisphere: str
    mean_probability: float | None = None
    max_probability: float | None = None
    fold_agreement: float | None = None
    region: str | None = None


@dataclass(frozen=True)
class RegionLoad:
    """Lesion load of one atlas region in one case."""

    index: int
    name: str
    region_ml: float
    lesion_ml: float

    @property
    def percent(self) -> float | None:
        """Lesion volume as a percentage of the region (None for a region absent here)."""
        return None if self.region_ml == 0 else 100.0 * self.lesion_ml / self.region_ml


@dataclass(frozen=True)
class CaseLesions:
    """Every lesion of one case and the case's totals (zeros when there is no lesion).

    Attributes:
        case: the case id.
        lesions: largest first.
        voxel_ml: volume of one voxel (ml).
        connectivity: the cc3d connectivity the lesions were found with.
        hemisphere_method: one of :data:`HEMISPHERE_METHODS`.
        world_space: what the world mm coordinates are in (``scanner`` or an MNI name).
        left_ml, right_ml: lesion volume on each side of the mid-sagittal plane, by voxel.
        mean_probability, max_probability: over all lesion voxels (None without
            probabilities or without lesions).
        regions: atlas loads, one per atlas region (empty without an atlas).
    """

    case: str
    lesions: tuple[Lesion, ...]
    voxel_ml: float
    connectivity: int
    hemisphere_method: str
    world_space: str
    left_ml: float = 0.0
    right_ml: float = 0.0
    mean_probability: float | None = None
    max_probability: float | None = None
    regions: tuple[RegionLoad, ...] = ()

    @property
    def voxels(self) -> int:
        return sum(lesion.voxels for lesion in self.lesions)

    @property
    def volume_ml(self) -> float:
        return self.voxels * self.voxel_ml

    @property
    def largest_ml(self) -> float:
        return max((lesion.volume_ml for lesion in self.lesions), default=0.0)


@dataclass(frozen=True)
class VoxelMaps:
    """Optional per-voxel inputs of one case, each ``(Z, Y, X)`` on the label grid.

    Attributes:
        foreground: foreground probability ``1 - p(background)``.
        agreement: fraction of ensemble members agreeing with the final label.
        brain: the brain mask (bool) for the mid-sagittal plane.
        atlas: atlas labels resampled onto the grid.
    """

    foreground: np.ndarray | None = None
    agreement: np.ndarray | None = None
    brain: np.ndarray | None = None
    atlas: np.ndarray | None = None


def is_mni(meta: ImageMeta, space: str | None) -> bool:
    """MNI-space data: a BIDS ``space-MNI...`` entity or a NIfTI sform/qform code 4."""
    if space is not None:
        return space.upper().startswith("MNI")
    return MNI_CODE in (meta.sform_code, meta.qform_code)


def voxel_to_world(meta: ImageMeta, zyx: np.ndarray) -> np.ndarray:
    """World mm ``(N, 3)`` (x, y, z) of voxel positions ``(N, 3)`` given as (z, y, x)."""
    affine = meta.affine_array
    return np.asarray(zyx, np.float64)[:, ::-1] @ affine[:3, :3].T + affine[:3, 3]


def midline_x(meta: ImageMeta, brain: np.ndarray | None, mni: bool) -> tuple[float, str]:
    """World x of the mid-sagittal plane and the method (module docstring)."""
    if mni:
        return 0.0, "mni_x_sign"
    if brain is not None and brain.any():
        centre = np.array(ndimage.center_of_mass(brain.astype(np.float32)))
        return float(voxel_to_world(meta, centre[None])[0, 0]), "brain_midsagittal"
    centre = (np.array(meta.shape, np.float64) - 1) / 2
    return float(voxel_to_world(meta, centre[None])[0, 0]), "grid_midsagittal"


def _side(x_mm: float, midline: float) -> str:
    return "right" if x_mm > midline else "left" if x_mm < midline else "midline"


def _per_lesion(
    values: np.ndarray | None, components: np.ndarray, index: np.ndarray, how: str
) -> list[float | None]:
    if values is None:
        return [None] * len(index)
    function = ndimage.mean if how == "mean" else ndimage.maximum
    return [float(v) for v in np.atleast_1d(function(values, components, index))]


def majority_per_component(
    ids: np.ndarray, values: np.ndarray, count: int, ignore_zero: bool
) -> np.ndarray:
    """The most frequent value of each component 1..count (ties: the smallest value),
    ``(count,)``; with ``ignore_zero``, 0 wins only in a component holding nothing else.

    One sort over the voxels instead of a count per component: a prediction of thousands
    of small blobs (an untrained network) is measured in one pass.

    Args:
        ids: component id (1..count) of each lesion voxel.
        values: the value (labels, atlas regions; integers >= 0) at the same voxels.
    """
    out = np.zeros(count, np.int64)
    if ids.size == 0:
        return out
    base = int(values.max(initial=0)) + 1
    pairs, counts = np.unique(ids.astype(np.int64) * base + values.astype(np.int64),
                              return_counts=True)  # fmt: skip
    owner, value = pairs // base, pairs % base
    if ignore_zero:
        counts = np.where(value == 0, 0, counts)
    order = np.lexsort((value, -counts, owner))  # by component, most frequent first
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    out[owner[first] - 1] = value[first]
    return out


@dataclass(frozen=True)
class ComponentStats:
    """Per-component figures of a label map, components 1..count at rows 0..count-1."""

    sizes: np.ndarray  # (count,) voxels
    centroids_zyx: np.ndarray  # (count, 3) mean voxel index
    labels: np.ndarray  # (count,) majority label
    regions: np.ndarray | None  # (count,) majority atlas region (None: no atlas)


def component_stats(
    components: np.ndarray, count: int, labels: np.ndarray, atlas: np.ndarray | None
) -> ComponentStats:
    """Sizes, centroids and majority label / atlas region of every component at once."""
    where = np.nonzero(components)
    ids = components[where]
    sizes = np.bincount(ids, minlength=count + 1)[1:]
    sums = [np.bincount(ids, weights=axis, minlength=count + 1)[1:] for axis in where]
    centroids = np.stack(sums, axis=1) / np.maximum(sizes, 1)[:, None]
    majority = majority_per_component(ids, labels[where], count, ignore_zero=True)
    regions = None
    if atlas is not None:
        regions = majority_per_component(ids, atlas[where], count, ignore_zero=True)
    return ComponentStats(sizes, centroids, majority, regions)


def _lesion(
    number: int,
    row: int,
    box: tuple[slice, ...],
    stats: ComponentStats,
    meta: ImageMeta,
    world: np.ndarray,
    midline: float,
    extras: dict[str, float | None],
    region: str | None,
) -> Lesion:
    """One lesion (component ``row + 1``) from its bounding box and the shared figures."""
    voxels = int(stats.sizes[row])
    centre_zyx = stats.centroids_zyx[row]
    return Lesion(
        lesion=number,
        label=int(stats.labels[row]),
        voxels=voxels,
        volume_ml=voxels * float(np.prod(meta.spacing_mm)) / 1000.0,
        centroid_ijk=tuple(float(v) for v in centre_zyx[::-1]),
        centroid_mm=tuple(float(v) for v in world[row]),
        bbox_min_ijk=tuple(int(s.start) for s in box[::-1]),
        bbox_max_ijk=tuple(int(s.stop) - 1 for s in box[::-1]),
        hemisphere=_side(float(world[row, 0]), midline),
        region=region,
        **extras,
    )


def _region_loads(
    atlas: np.ndarray, lesion_mask: np.ndarray, names: Mapping[int, str], voxel_ml: float
) -> tuple[RegionLoad, ...]:
    size = max(int(atlas.max(initial=0)), max(names, default=0)) + 1
    region_voxels = np.bincount(atlas.ravel().astype(np.int64), minlength=size)
    lesion_voxels = np.bincount(atlas[lesion_mask].astype(np.int64), minlength=size)
    return tuple(RegionLoad(index, name, region_voxels[index] * voxel_ml,
                            lesion_voxels[index] * voxel_ml)
                 for index, name in sorted(names.items()))  # fmt: skip


def _sides_ml(mask: np.ndarray, meta: ImageMeta, midline: float, voxel_ml: float) -> tuple:
    x_mm = voxel_to_world(meta, np.argwhere(mask))[:, 0]
    return float((x_mm < midline).sum() * voxel_ml), float((x_mm > midline).sum() * voxel_ml)


def measure_lesions(
    case: str,
    labels: np.ndarray,
    meta: ImageMeta,
    connectivity: int,
    maps: VoxelMaps | None = None,
    space: str | None = None,
    atlas_names: Mapping[int, str] | None = None,
) -> CaseLesions:
    """Measure every lesion of a label map (see the module docstring).

    Args:
        case: the case id (the table's ``case`` column).
        labels: label map ``(Z, Y, X)``; every value > 0 is lesion.
        meta: its geometry (spacing for volumes, affine for world coordinates).
        connectivity: 26/18/6 (ISLES'22: 26, ATLAS: 6).
        maps: optional probabilities, fold agreement, brain mask and atlas labels.
        space: the BIDS ``space`` entity of the data, when known (MNI detection).
        atlas_names: ``{region index: name}``; with ``maps.atlas``, region loads per case.

    Returns:
        The case's lesions and totals; a case without lesions has none and zero totals.
    """
    maps = maps or VoxelMaps()
    mask = labels > 0
    mni = is_mni(meta, space)
    midline, method = midline_x(meta, maps.brain, mni)
    voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
    components, count = label_components(mask, connectivity)
    index = np.arange(1, count + 1)
    with_atlas = maps.atlas is not None and atlas_names is not None
    stats = component_stats(components, count, labels, maps.atlas if with_atlas else None)
    world = voxel_to_world(meta, stats.centroids_zyx)
    extras = {
        "mean_probability": _per_lesion(maps.foreground, components, index, "mean"),
        "max_probability": _per_lesion(maps.foreground, components, index, "max"),
        "fold_agreement": _per_lesion(maps.agreement, components, index, "mean"),
    }
    boxes = ndimage.find_objects(components)
    lesions = []
    for number, i in enumerate(np.argsort(-stats.sizes, kind="stable"), 1):
        region = None if stats.regions is None else atlas_names.get(int(stats.regions[i]))
        values = {key: found[i] for key, found in extras.items()}
        lesions.append(_lesion(number, i, boxes[i], stats, meta, world, midline, values, region))
    left, right = _sides_ml(mask, meta, midline, voxel_ml) if count else (0.0, 0.0)
    foreground = maps.foreground[mask] if maps.foreground is not None and count else None
    regions = ()
    if maps.atlas is not None and atlas_names is not None:
        regions = _region_loads(maps.atlas, mask, atlas_names, voxel_ml)
    return CaseLesions(
        case, tuple(lesions), voxel_ml, connectivity, method,
        space or ("MNI152" if mni else "scanner"), left, right,
        None if foreground is None else float(foreground.mean()),
        None if foreground is None else float(foreground.max()), regions,
    )  # fmt: skip
