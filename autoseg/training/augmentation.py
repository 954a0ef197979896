"""Training augmentation settings and the one parameter sampler both augmentation paths use.

The plans' ``augmentation`` entry is an :class:`autoseg.plans.Augmentation` (missing keys
take its defaults, which follow nnU-Net's choices); :func:`resolve` turns it into the
settings dict the transforms read. Each sample's augmentation is drawn once by
:func:`draw_parameters` into a :class:`SampleParameters` record, which either path applies:
:mod:`~autoseg.training.cpu_augmentation` (numpy / scipy, in the loader workers) or
:mod:`~autoseg.training.device_augmentation` (torch, on the training device after the
host-to-device copy). Both therefore draw from the same distributions by construction.

Order: spatial transforms (rotation, scaling, optional elastic deformation, all about the
patch centre, then a centre crop to the patch size), intensity transforms (noise, blur,
brightness, contrast, low resolution, gamma), mirroring. Labels are resampled with nearest
neighbour and padded with -1, so they stay integer and aligned with the image.

For 2D / 2.5D batches ``(B, C*k, Y, X)`` every transform is in-plane: the slice stack is
moved as one image and all its channels change alike. For 3D data with ``rotation_axes ==
"in_plane"`` (thick slices) rotation, scaling and elastic deformation act in (Y, X) only,
the same for every slice, never across the thick Z axis.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from autoseg.plans import Augmentation, augmentation_defaults

# Where augmentation runs: the loader workers, the training device, or auto (device on CUDA).
AUGMENT_ON = ("auto", "cpu", "device")
INTERPOLATION_MARGIN = 2  # voxels of slack around the sampled coordinates
ANGLE_STEP = math.radians(5.0)


def defaults(dim: int) -> dict[str, Any]:
    """The default settings for 2D or 3D patches (declared in :mod:`autoseg.plans`)."""
    return augmentation_defaults(dim).settings()


def resolve(augmentation: Augmentation | dict[str, Any] | None, dim: int) -> dict[str, Any]:
    """The settings the transforms read: the plans' entry, a missing key taking its
    default for ``dim``-D patches (a JSON object is read as the plans read it)."""
    if not isinstance(augmentation, Augmentation):
        where = "augmentation"
        augmentation = Augmentation.from_json(augmentation or {}, where, augmentation_defaults(dim))
    return augmentation.settings()


def probability(settings: dict[str, Any], name: str) -> float:
    """Per-sample probability of one transform."""
    return float(settings["probabilities"].get(name, settings["probability"]))


def _enabled(settings: dict[str, Any], key: str, name: str) -> bool:
    return settings[key] is not None and probability(settings, name) > 0


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

    Uses :func:`rotation_matrix` (the transform that will run) on a grid of angles at most
    :data:`ANGLE_STEP` apart (extremes and 0 included); between grid points it can be
    exceeded by a fraction of a voxel, which the interpolation margin covers. Wide 3D
    ranges use the exact bound instead: no rotation moves a corner farther than the
    half-diagonal.
    """
    half = (np.asarray(patch, dtype=float) - 1) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half]))).T  # (d, 2**d)
    if len(patch) == 3 and angles[1] - angles[0] > math.radians(90):
        return np.full(3, np.linalg.norm(half))
    steps = max(2, math.ceil((angles[1] - angles[0]) / ANGLE_STEP) + 1)
    grid = np.unique(np.r_[np.linspace(angles[0], angles[1], steps), 0.0])
    combos = itertools.product(grid, repeat=1 if len(patch) == 2 else 3)
    rotated = [rotation_matrix(angles) @ corners for angles in combos]
    return np.abs(np.stack(rotated)).max(axis=(0, 2))


def sample_size(
    patch_size: Sequence[int], augmentation: Augmentation | dict[str, Any] | None, dim: int
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


def cut_size(parameters: Sequence[SampleParameters], patch_size: Sequence[int]) -> tuple[int, ...]:
    """The smallest cut that covers every sample's transformed patch plus the
    interpolation margin: the bounding box ``|M| h`` of each moved patch (half-size ``h``)
    and its largest elastic shift, grown evenly so the patch stays centred.

    :func:`sample_size` bounds this over every possible draw; at the default chances most
    batches need far less (no spatial draw at all: the patch itself), which the reading
    worker and, on the device path, the host-to-device copy save.
    """
    patch = np.asarray(patch_size, dtype=int)
    needed = patch.copy()
    for params in parameters:
        if not params.spatial:
            continue
        first = len(patch) - params.axes
        extent = np.abs(params.matrix()) @ ((patch[first:] - 1) / 2)
        if params.elastic is not None:
            extent = extent + np.abs(params.elastic).reshape(params.axes, -1).max(axis=1)
        size = np.ceil(2 * extent + 1).astype(int) + 2 * INTERPOLATION_MARGIN
        needed[first:] = np.maximum(needed[first:], size)
    needed += (needed - patch) % 2
    return tuple(int(n) for n in needed)


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """The rotation of one angle (2D, in the plane of the last two axes) or three angles
    (3D: about array axis 0, then 1, then 2), as a ``(d, d)`` matrix in array axis order."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        turn = np.eye(3)
        turn[i, i], turn[i, j], turn[j, i], turn[j, j] = c, -s, s, c
        matrix = turn @ matrix
    return matrix


@dataclass(frozen=True)
class SampleParameters:
    """Everything random about one sample's augmentation; either path applies it as is.

    Per-channel entries hold one value per image channel for 3D data and a single value
    (shared by every channel) for slice stacks. None means "did not fire".

    Attributes:
        axes: axes the spatial transform moves (2: in-plane or 2D, 3: 3D).
        angles: rotation in radians (1 angle for in-plane, 3 for 3D), or None.
        scale: coordinate scale (> 1 zooms out), or None.
        elastic: coarse displacement field ``(d, *grid)`` in input voxels over the patch
            (d = the spatial transform's axes), upsampled linearly to the patch, or None.
        noise: ``(std, seed)`` of additive Gaussian noise, or None.
        blur: per-channel Gaussian sigma in voxels (None entries: channel not blurred).
        brightness: per-channel multiplier.
        contrast: per-channel factor about the channel mean (range preserved).
        low_resolution: per-channel zoom of the simulated low resolution (None: skipped).
        gamma: per-channel gamma (intensities rescaled to [0, 1]; mean and std kept).
        mirror: spatial axes to flip (0 = first spatial axis).
    """

    axes: int = 3
    angles: tuple[float, ...] | None = None
    scale: float | None = None
    elastic: np.ndarray | None = None
    noise: tuple[float, int] | None = None
    blur: tuple[float | None, ...] | None = None
    brightness: tuple[float, ...] | None = None
    contrast: tuple[float, ...] | None = None
    low_resolution: tuple[float | None, ...] | None = None
    gamma: tuple[float, ...] | None = None
    mirror: tuple[int, ...] = ()

    @property
    def spatial(self) -> bool:
        """Whether the sample is resampled (otherwise the patch is a plain centre crop)."""
        return self.angles is not None or self.scale is not None or self.elastic is not None

    def matrix(self) -> np.ndarray:
        """Output-to-input coordinate map about the centre, over the transform's axes."""
        rotation = np.eye(self.axes) if self.angles is None else rotation_matrix(self.angles)
        return rotation * (1.0 if self.scale is None else self.scale)


@dataclass(frozen=True)
class Deferred:
    """A batch whose augmentation runs later on the device: what the worker drew for it.

    Attributes:
        patch_size: the patch the device path resamples the larger cut to.
        in_plane: 3D data transformed in (Y, X) only.
        parameters: one record per sample.
    """

    patch_size: tuple[int, ...]
    in_plane: bool
    parameters: tuple[SampleParameters, ...]


def _fires(rng: np.random.Generator, settings: dict[str, Any], key: str, name: str) -> bool:
    """Draw whether one transform fires (always consuming one number, so that turning a
    transform off does not shift the others' draws)."""
    draw = rng.random()
    return _enabled(settings, key, name) and draw < probability(settings, name)


def _around_one(rng: np.random.Generator, low: float, high: float) -> float:
    """Half the draws below 1 and half above when the range spans 1 (batchgenerators'
    rule for scale, contrast and gamma: shrinking and growing equally often)."""
    if low < 1 and rng.random() < 0.5:
        return float(rng.uniform(low, min(high, 1.0)))
    return float(rng.uniform(max(low, 1.0), high))


def _elastic_field(
    rng: np.random.Generator, settings: dict[str, Any], moved: Sequence[int]
) -> np.ndarray:
    """Control points every ``sigma`` voxels with the pointwise displacement spread of
    batchgenerators' field (uniform noise in [-1, 1] smoothed by a Gaussian of ``sigma``,
    times ``alpha``): a coarse field costs a tiny fraction of smoothing a full-size one."""
    alpha = rng.uniform(*settings["elastic_alpha"])
    sigma = rng.uniform(*settings["elastic_sigma"])
    spread = alpha * math.sqrt(1 / 3) * (2 * math.sqrt(math.pi) * sigma) ** (-len(moved) / 2)
    grid = [max(2, math.ceil((p - 1) / sigma) + 1) for p in moved]
    return rng.normal(0.0, spread, size=(len(moved), *grid))


def _per_channel(count: int, draw: Any) -> tuple:
    return tuple(draw() for _ in range(count))


def _spatial_parameters(
    rng: np.random.Generator, settings: dict[str, Any], moved: Sequence[int]
) -> dict[str, Any]:
    low, high = rotation_range(settings)
    angles = tuple(float(a) for a in rng.uniform(low, high, 1 if len(moved) == 2 else 3))
    scale = _around_one(rng, *settings["scale"]) if _enabled(settings, "scale", "scale") else 1.0
    out = {
        "angles": angles if _fires(rng, settings, "rotation_deg", "rotation") else None,
        "scale": scale if _fires(rng, settings, "scale", "scale") else None,
    }
    if settings["elastic"] and _fires(rng, settings, "elastic", "elastic"):
        out["elastic"] = _elastic_field(rng, settings, moved)
    return out


def _intensity_parameters(
    rng: np.random.Generator, settings: dict[str, Any], channels: int, dim: int
) -> dict[str, Any]:
    """The intensity draws, each transform gated by its own per-sample chance; 3D draws
    per channel (blur and low resolution each channel with chance 0.5), stacks once."""
    n, p_channel = (channels, 0.5) if dim == 3 else (1, 1.0)
    out: dict[str, Any] = {}
    if _fires(rng, settings, "gaussian_noise_variance", "noise"):
        # batchgenerators uses the drawn "variance" as the standard deviation; kept so.
        std = rng.uniform(*settings["gaussian_noise_variance"])
        out["noise"] = (float(std), int(rng.integers(2**31)))
    if _fires(rng, settings, "gaussian_blur_sigma", "blur"):
        sigma = lambda: float(rng.uniform(*settings["gaussian_blur_sigma"]))  # noqa: E731
        out["blur"] = _per_channel(n, lambda: sigma() if rng.random() < p_channel else None)
    if _fires(rng, settings, "brightness", "brightness"):
        out["brightness"] = _per_channel(n, lambda: float(rng.uniform(*settings["brightness"])))
    if _fires(rng, settings, "contrast", "contrast"):
        out["contrast"] = _per_channel(n, lambda: _around_one(rng, *settings["contrast"]))
    if _fires(rng, settings, "low_resolution", "low_resolution"):
        zoom = lambda: float(rng.uniform(*settings["low_resolution"]))  # noqa: E731
        out["low_resolution"] = _per_channel(
            n, lambda: zoom() if rng.random() < p_channel else None
        )
    if _fires(rng, settings, "gamma", "gamma"):
        out["gamma"] = _per_channel(n, lambda: _around_one(rng, *settings["gamma"]))
    return out


def draw_parameters(
    rng: np.random.Generator,
    settings: dict[str, Any],
    patch_size: Sequence[int],
    dim: int,
    channels: int,
) -> SampleParameters:
    """One sample's augmentation: the single sampler of both the CPU and the device path.

    Args:
        rng: the batch's generator (seeded by ``(seed, batch index)``).
        settings: :func:`resolve`'d settings.
        patch_size: the output patch (``(Pz, Py, Px)`` or ``(Py, Px)``).
        dim: 3 or 2.
        channels: image channels of the sample (for 2D stacks ``C*k``; drawn once anyway).
    """
    patch = [int(p) for p in patch_size]
    moved = patch if spatial_dims(settings, dim) == dim else patch[1:]
    spatial = _spatial_parameters(rng, settings, moved)
    intensity = _intensity_parameters(rng, settings, channels, dim)
    axes = [int(a) for a in settings["mirror_axes"] or ()]
    mirror = tuple(a for a, flip in zip(axes, rng.random(len(axes)) < 0.5, strict=True) if flip)
    return SampleParameters(len(moved), **spatial, **intensity, mirror=mirror)


PER_CHANNEL_FIELDS = ("blur", "brightness", "contrast", "low_resolution", "gamma")


def shared_by_copies(params: SampleParameters, copies: int) -> SampleParameters:
    """``params`` drawn for the image's channels, repeated for ``copies`` stacked copies of
    them (a channel, then its contralateral mirror): a scanner's contrast changes a
    hemisphere and its mirror alike, and independent draws would teach the network that
    their difference is noise. A single value already applies to every channel."""
    repeated = {
        name: values * copies
        for name in PER_CHANNEL_FIELDS
        if (values := getattr(params, name)) is not None and len(values) > 1
    }
    return replace(params, **repeated) if repeated else params


def draw_batch(
    rng: np.random.Generator,
    settings: dict[str, Any],
    patch_size: Sequence[int],
    dim: int,
    channels: int,
    batch_size: int,
    copies: int = 1,
) -> tuple[SampleParameters, ...]:
    """:func:`draw_parameters` for every sample of a batch, in order; with ``copies`` > 1
    the ``channels`` are that many stacked copies sharing their draws
    (:func:`shared_by_copies`)."""
    if channels % copies:
        raise ValueError(f"{channels} channels are not {copies} stacked copies")
    return tuple(
        shared_by_copies(draw_parameters(rng, settings, patch_size, dim, channels // copies),
                         copies)
        for _ in range(batch_size)
    )  # fmt: skip


@dataclass(frozen=True)
class ChannelOps:
    """One backend's channel operations: numpy/scipy for the CPU path, torch on the device.

    Both paths run :func:`channel_intensity` with their own ops, so the order of the
    intensity transforms and their formulas are written once.
    """

    blur: Callable[[Any, float], Any]
    clip: Callable[[Any, Any, Any], Any]
    low_resolution: Callable[[Any, float, bool], Any]
    gamma: Callable[[Any, float], Any]


def channel_values(values: tuple | None, count: int) -> list:
    """Per-channel values (a single value applies to every channel; None: no channel)."""
    if values is None:
        return [None] * count
    return list(values) * count if len(values) == 1 else list(values)


def channel_intensity(out: Any, params: SampleParameters, in_plane: bool, ops: ChannelOps) -> Any:
    """Blur, brightness, contrast, low resolution and gamma, channel by channel, in place on
    a sample ``(C, *P)`` (array or tensor) whose noise is already added."""

    def contrast(channel: Any, factor: float) -> Any:
        low, high, mean = channel.min(), channel.max(), channel.mean()
        return ops.clip((channel - mean) * factor + mean, low, high)

    steps = (
        (params.blur, ops.blur),
        (params.brightness, lambda channel, factor: channel * factor),
        (params.contrast, contrast),
        (params.low_resolution, lambda channel, zoom: ops.low_resolution(channel, zoom, in_plane)),
        (params.gamma, ops.gamma),
    )
    for values, apply in steps:
        for c, value in enumerate(channel_values(values, len(out))):
            if value is not None:
                out[c] = apply(out[c], value)
    return out
