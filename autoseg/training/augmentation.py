"""Training augmentation with batchgenerators, configured by the plans' ``augmentation`` entry.

The entry is a plain dict (see :data:`DEFAULTS`; missing keys take the defaults, which
follow nnU-Net's choices). Spatial transforms run first (rotation, scaling, optional
elastic deformation, all around the patch centre, then a centre crop to the patch size),
then intensity transforms, then mirroring. Labels are resampled with order 0 and padded
with -1, so they stay integer and aligned with the image.

For 2D / 2.5D batches ``(B, C*k, Y, X)`` every transform is in-plane: the slice stack is
moved as one image. For 3D data with ``rotation_axes == "in_plane"`` (thick slices) the
spatial transform is applied slice by slice ("dummy 2D"): rotation and scaling in (Y, X)
only, never across the thick Z axis.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from batchgenerators.augmentations.utils import rotate_coords_2d, rotate_coords_3d
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import (
    GaussianBlurTransform,
    GaussianNoiseTransform,
)
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

from autoseg.planning.rules import AUGMENTATION_RANGES
from autoseg.training.sampling import SEG_PAD

# Defaults (nnU-Net-like). Ranges are [low, high]; a null range or probability 0 disables
# a transform. "probability" is the per-sample chance of every transform unless
# "probabilities" names its own (keys: rotation, scale, elastic, noise, blur, brightness,
# contrast, low_resolution, gamma).
DEFAULTS: dict[str, Any] = {
    **AUGMENTATION_RANGES,  # rotation +-30 deg is for 3D; 2D / 2.5D: see defaults()
    "rotation_axes": "all",  # "all" (3D), or "in_plane": about Z only
    "elastic_alpha": [0.0, 200.0],
    "elastic_sigma": [9.0, 13.0],
    "mirror_axes": [0, 1, 2],
    "probabilities": {
        "noise": 0.1,
        "brightness": 0.15,
        "contrast": 0.15,
        "low_resolution": 0.25,
        "gamma": 0.3,
    },
}
INTERPOLATION_MARGIN = 2  # voxels of slack around the sampled coordinates
# Images are interpolated linearly: a cubic spline first prefilters the whole enlarged cut
# (several times the patch), which took most of a 3D batch's time in loader_speed.py.
LINEAR = 1
ANGLE_STEP = math.radians(5.0)


def defaults(dim: int) -> dict[str, Any]:
    """The default settings for 2D or 3D patches: 2D rotates in-plane over the full circle
    (slices have no preferred orientation), 3D by +-30 degrees about every axis."""
    settings = copy.deepcopy(DEFAULTS)
    if dim == 2:
        settings.update(rotation_deg=[-180.0, 180.0], rotation_axes="in_plane", mirror_axes=[0, 1])
    return settings


def resolve(augmentation: dict[str, Any] | None, dim: int) -> dict[str, Any]:
    """The plans' entry completed with :func:`defaults` (its own keys win)."""
    settings = defaults(dim)
    given = dict(augmentation or {})
    probabilities = {**settings["probabilities"], **given.pop("probabilities", {})}
    settings.update(given)
    settings["probabilities"] = probabilities
    return settings


def probability(settings: dict[str, Any], name: str) -> float:
    """Per-sample probability of one transform."""
    return float(settings["probabilities"].get(name, settings["probability"]))


def _enabled(settings: dict[str, Any], key: str, name: str) -> bool:
    return settings.get(key) is not None and probability(settings, name) > 0


def spatial_dims(settings: dict[str, Any], dim: int) -> int:
    """Dimensionality of the spatial transform: 2 for 2D data and for in-plane 3D."""
    return 2 if dim == 2 or settings["rotation_axes"] == "in_plane" else 3


def rotation_range(settings: dict[str, Any]) -> tuple[float, float]:
    """Rotation range in radians (0, 0 when disabled)."""
    if not _enabled(settings, "rotation_deg", "rotation"):
        return 0.0, 0.0
    low, high = settings["rotation_deg"]
    return math.radians(low), math.radians(high)


def max_zoom_out(settings: dict[str, Any]) -> float:
    """The largest factor by which the sampling grid spreads (scale > 1 zooms out)."""
    if not _enabled(settings, "scale", "scale"):
        return 1.0
    return max(1.0, float(settings["scale"][1]))


def _corner_extent(patch: Sequence[int], angles: tuple[float, float]) -> np.ndarray:
    """Largest |coordinate| per axis of the patch corners over rotations in ``angles``.

    Uses batchgenerators' own rotation functions on a grid of angles at most
    :data:`ANGLE_STEP` apart (extremes and 0 included), so the bound matches the transform
    that will run; between grid points it can be exceeded by a fraction of a voxel, which
    the interpolation margin covers. Wide 3D ranges use the exact bound instead: no
    rotation moves a corner farther than the half-diagonal.
    """
    half = (np.asarray(patch, dtype=float) - 1) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half]))).T  # (d, 2**d)
    if len(patch) == 3 and angles[1] - angles[0] > math.radians(90):
        return np.full(3, np.linalg.norm(half))
    steps = max(2, math.ceil((angles[1] - angles[0]) / ANGLE_STEP) + 1)
    grid = np.unique(np.r_[np.linspace(angles[0], angles[1], steps), 0.0])
    if len(patch) == 2:
        rotated = [rotate_coords_2d(corners, angle) for angle in grid]
    else:
        rotated = [rotate_coords_3d(corners, *c) for c in itertools.product(grid, repeat=3)]
    return np.abs(np.stack(rotated)).max(axis=(0, 2))


def sample_size(
    patch_size: Sequence[int], augmentation: dict[str, Any] | None, dim: int
) -> tuple[int, ...]:
    """The size to cut so that the spatial transform plus centre crop shows no padding.

    Each axis grows to cover the rotated, zoomed-out patch plus an interpolation margin,
    keeping the growth even so the patch stays exactly centred (the unrotated case is
    then a plain centre crop of the same voxels). Axes the transform does not move keep
    their size.

    Args:
        patch_size: ``(Pz, Py, Px)`` for 3D or ``(Py, Px)`` for 2D.
        augmentation: the plans' entry (None: defaults).
        dim: 2 or 3.
    """
    settings = resolve(augmentation, dim)
    patch = [int(p) for p in patch_size]
    moved = patch if spatial_dims(settings, dim) == dim else patch[1:]
    angles, zoom = rotation_range(settings), max_zoom_out(settings)
    if angles == (0.0, 0.0) and zoom == 1.0 and not settings["elastic"]:
        return tuple(patch)
    extent = _corner_extent(moved, angles) * zoom
    needed = [math.ceil(2 * e + 1) + 2 * INTERPOLATION_MARGIN for e in extent]
    grown = [max(p, n) for p, n in zip(moved, needed, strict=True)]
    grown = [g + (g - p) % 2 for g, p in zip(grown, moved, strict=True)]
    return tuple(patch[: len(patch) - len(grown)] + grown)


class InPlane(AbstractTransform):
    """Runs a 2D transform on 3D batches slice by slice: ``(B, C, Z, Y, X)`` is seen as
    ``(B, C*Z, Y, X)`` so every slice gets the same in-plane rotation and scaling."""

    def __init__(self, transform: AbstractTransform, keys: Sequence[str] = ("data", "seg")):
        self.transform = transform
        self.keys = tuple(keys)

    def __call__(self, **batch: Any) -> dict[str, Any]:
        shapes = {key: batch[key].shape for key in self.keys}
        for key, shape in shapes.items():
            batch[key] = batch[key].reshape(shape[0], shape[1] * shape[2], *shape[3:])
        batch = self.transform(**batch)
        for key, shape in shapes.items():
            out = batch[key]
            batch[key] = out.reshape(shape[0], shape[1], shape[2], *out.shape[2:])
        return batch


def spatial_transform(
    settings: dict[str, Any], patch_size: Sequence[int], dim: int
) -> AbstractTransform:
    """Rotation / scaling / elastic deformation about the centre, then a centre crop."""
    dims = spatial_dims(settings, dim)
    angles = rotation_range(settings)
    patch = tuple(patch_size) if dims == dim else tuple(patch_size[1:])
    transform = SpatialTransform(
        patch,
        do_elastic_deform=bool(settings["elastic"]),
        alpha=tuple(settings["elastic_alpha"]),
        sigma=tuple(settings["elastic_sigma"]),
        p_el_per_sample=probability(settings, "elastic"),
        do_rotation=angles != (0.0, 0.0),
        angle_x=angles,
        angle_y=angles if dims == 3 else (0.0, 0.0),
        angle_z=angles if dims == 3 else (0.0, 0.0),
        p_rot_per_sample=probability(settings, "rotation"),
        do_scale=_enabled(settings, "scale", "scale"),
        scale=tuple(settings["scale"] or (1.0, 1.0)),
        p_scale_per_sample=probability(settings, "scale"),
        border_mode_data="constant",
        border_cval_data=0.0,
        order_data=LINEAR,
        border_mode_seg="constant",
        border_cval_seg=SEG_PAD,
        order_seg=0,
        random_crop=False,
    )
    return transform if dims == dim else InPlane(transform)


def intensity_transforms(settings: dict[str, Any], dim: int, in_plane: bool) -> list:
    """Noise, blur, brightness, contrast, low resolution and gamma, each with its chance.

    Slice stacks (2D) change all their slices alike (``per_channel`` off) so neighbouring
    slices keep consistent intensities; 3D changes each image channel on its own.
    """
    per_channel = dim == 3
    p = lambda name: probability(settings, name)  # noqa: E731
    candidates = [
        ("gaussian_noise_variance", "noise", lambda r: GaussianNoiseTransform(
            r, p_per_sample=p("noise"), per_channel=False)),
        ("gaussian_blur_sigma", "blur", lambda r: GaussianBlurTransform(
            r, different_sigma_per_channel=per_channel, p_per_sample=p("blur"),
            p_per_channel=0.5 if per_channel else 1.0)),
        ("brightness", "brightness", lambda r: BrightnessMultiplicativeTransform(
            r, per_channel=per_channel, p_per_sample=p("brightness"))),
        ("contrast", "contrast", lambda r: ContrastAugmentationTransform(
            r, per_channel=per_channel, p_per_sample=p("contrast"))),
        ("low_resolution", "low_resolution", lambda r: SimulateLowResolutionTransform(
            r, per_channel=per_channel, p_per_channel=0.5 if per_channel else 1.0,
            p_per_sample=p("low_resolution"), ignore_axes=(0,) if in_plane else None)),
        ("gamma", "gamma", lambda r: GammaTransform(
            r, per_channel=per_channel, retain_stats=True, p_per_sample=p("gamma"))),
    ]  # fmt: skip
    enabled = [(key, make) for key, name, make in candidates if _enabled(settings, key, name)]
    return [make(tuple(settings[key])) for key, make in enabled]


def build_transforms(
    augmentation: dict[str, Any] | None, patch_size: Sequence[int], dim: int
) -> Compose:
    """The batchgenerators pipeline for one configuration.

    Input batches hold ``data`` float32 ``(B, C, *sample_size)`` and ``seg`` ``(B, 1,
    *sample_size)`` cut with :func:`sample_size`; the output is cropped to ``patch_size``.
    The transforms draw from numpy's global random state (batchgenerators' design), so
    seed it per batch for reproducible batches.

    Args:
        augmentation: the plans' ``augmentation`` entry (None: :func:`defaults`).
        patch_size: output patch ``(Pz, Py, Px)`` or ``(Py, Px)``.
        dim: 3 for 3D patches, 2 for 2D / 2.5D slice stacks.
    """
    settings = resolve(augmentation, dim)
    in_plane = dim == 3 and spatial_dims(settings, dim) == 2
    transforms = [spatial_transform(settings, patch_size, dim)]
    transforms += intensity_transforms(settings, dim, in_plane)
    mirror_axes = tuple(int(a) for a in settings.get("mirror_axes") or ())
    if mirror_axes:
        transforms.append(MirrorTransform(mirror_axes))
    return Compose(transforms)
