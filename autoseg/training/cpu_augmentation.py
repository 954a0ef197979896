"""The CPU augmentation path: numpy / scipy, one sample at a time, in the loader workers.

It applies the :class:`~autoseg.training.augmentation.SampleParameters` drawn by
:func:`~autoseg.training.augmentation.draw_parameters`, the sampler the device path
(:mod:`~autoseg.training.device_augmentation`) uses too. Input samples are the larger cut
of :func:`~autoseg.training.augmentation.sample_size`; outputs are the patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from autoseg.plans import Augmentation
from autoseg.training.augmentation import (
    ChannelOps,
    Deferred,
    SampleParameters,
    channel_intensity,
    draw_batch,
    resolve,
    spatial_dims,
)
from autoseg.training.sampling import DATA_PAD, SEG_PAD

# Images are interpolated linearly: a cubic spline first prefilters the whole enlarged cut
# (several times the patch), which took most of a 3D batch's time in loader_speed.py.
LINEAR, NEAREST = 1, 0
EPSILON = 1e-7


def centre_crop(array: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """The centred ``patch`` of the last ``len(patch)`` axes (the cut grows evenly)."""
    starts = [(n - p) // 2 for n, p in zip(array.shape[-len(patch) :], patch, strict=True)]
    return array[(..., *[slice(s, s + p) for s, p in zip(starts, patch, strict=True)])]


def full_matrix(params: SampleParameters, dims: int) -> np.ndarray:
    """The ``(dims, dims)`` map of all spatial axes (identity on Z for in-plane 3D)."""
    matrix = np.eye(dims)
    matrix[dims - params.axes :, dims - params.axes :] = params.matrix()
    return matrix


def upsample_field(field: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """Linear upsampling of a coarse field ``(d, *grid)`` to ``(d, *patch)``, corners on
    corners (torch's ``align_corners=True``, as the device path does)."""
    axes = [np.linspace(0, g - 1, p) for g, p in zip(field.shape[1:], patch, strict=True)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    return np.stack([ndimage.map_coordinates(f, coords, order=1) for f in field])


def _resample(
    image: np.ndarray, params: SampleParameters, patch: Sequence[int], order: int, cval: float
) -> np.ndarray:
    """One channel ``(*cut)`` resampled to ``(*patch)`` about the centres of both."""
    matrix = full_matrix(params, image.ndim)
    centre_in = (np.asarray(image.shape) - 1) / 2
    centre_out = (np.asarray(patch) - 1) / 2
    if params.elastic is None:
        offset = centre_in - matrix @ centre_out
        return ndimage.affine_transform(
            image, matrix, offset, output_shape=tuple(patch), order=order, cval=cval
        )
    grid = np.stack(np.meshgrid(*[np.arange(p) for p in patch], indexing="ij"))
    coords = np.tensordot(matrix, grid - centre_out.reshape(-1, *[1] * len(patch)), 1)
    coords = coords + centre_in.reshape(-1, *[1] * len(patch))
    first = len(patch) - params.axes
    shift = upsample_field(params.elastic, patch[first:])  # (axes, *moved patch)
    coords[first:] += shift.reshape(params.axes, *[1] * first, *shift.shape[1:])  # same per slice
    return ndimage.map_coordinates(image, coords, order=order, cval=cval)


def spatial(
    data: np.ndarray, seg: np.ndarray, params: SampleParameters, patch: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate / scale / deform one sample (``(C, *cut)``, ``(1, *cut)``) to the patch."""
    if not params.spatial:
        return centre_crop(data, patch).copy(), centre_crop(seg, patch).copy()
    image = np.stack([_resample(c, params, patch, LINEAR, DATA_PAD) for c in data])
    labels = np.stack([_resample(c, params, patch, NEAREST, SEG_PAD) for c in seg])
    return image.astype(np.float32), labels


def _low_resolution(image: np.ndarray, zoom: float, ignore_first: bool) -> np.ndarray:
    """Downsample linearly by ``zoom`` and back by nearest neighbour, sampling where
    torch's ``interpolate`` does (``align_corners=False``), so both paths agree."""
    shape = np.asarray(image.shape)
    small = np.maximum(1, np.round(shape * zoom)).astype(int)
    if ignore_first:
        small[0] = shape[0]
    axes = [np.maximum((np.arange(s) + 0.5) * n / s - 0.5, 0)
            for s, n in zip(small, shape, strict=True)]  # fmt: skip
    down = ndimage.map_coordinates(image, np.meshgrid(*axes, indexing="ij"), order=1,
                                   mode="nearest")  # fmt: skip
    back = [np.floor(np.arange(n) * s / n).astype(int) for s, n in zip(small, shape, strict=True)]
    return down[np.ix_(*back)]


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma on the [0, 1]-rescaled channel, then its mean and std restored."""
    mean, std = image.mean(), image.std()
    low, span = image.min(), image.max() - image.min()
    out = np.power((image - low) / (span + EPSILON), gamma) * span + low
    return (out - out.mean()) / (out.std() + 1e-8) * std + mean


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma, mode="mirror")  # = torch's "reflect"


NUMPY_OPS = ChannelOps(blur=_blur, clip=np.clip, low_resolution=_low_resolution, gamma=_gamma)


def intensity(data: np.ndarray, params: SampleParameters, in_plane: bool) -> np.ndarray:
    """Noise, blur, brightness, contrast, low resolution, gamma on one sample ``(C, *P)``."""
    out = data.astype(np.float32, copy=True)
    if params.noise is not None:
        std, seed = params.noise
        out += std * np.random.default_rng(seed).standard_normal(out.shape, np.float32)
    return channel_intensity(out, params, in_plane, NUMPY_OPS)


def augment_sample(
    data: np.ndarray,
    seg: np.ndarray,
    params: SampleParameters,
    patch: Sequence[int],
    in_plane: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial, intensity, mirroring for one sample: ``(C, *cut)``, ``(1, *cut)`` in,
    ``(C, *patch)`` float32 and ``(1, *patch)`` labels out."""
    image, labels = spatial(data, seg, params, patch)
    image = intensity(image, params, in_plane)
    if params.mirror:
        axes = tuple(1 + a for a in params.mirror)
        image, labels = np.flip(image, axes), np.flip(labels, axes)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


@dataclass(frozen=True)
class CpuAugmentation:
    """The augmentation of one configuration; holds settings only.

    Attributes:
        settings: :func:`~autoseg.training.augmentation.resolve`'d plans entry.
        patch_size: output patch ``(Pz, Py, Px)`` or ``(Py, Px)``.
        dim: 3 for 3D patches, 2 for 2D / 2.5D slice stacks.
        channel_copies: the sample's channels are this many stacked copies of the image's
            (2 with the contralateral mirrors), which share their intensity draws.
    """

    settings: dict[str, Any]
    patch_size: tuple[int, ...]
    dim: int
    channel_copies: int = 1

    @property
    def in_plane(self) -> bool:
        return self.dim == 3 and spatial_dims(self.settings, self.dim) == 2

    def draw(self, rng: np.random.Generator, batch_size: int, channels: int) -> Deferred:
        """The batch's parameters (the one shared sampler), for now or for the device."""
        parameters = draw_batch(rng, self.settings, self.patch_size, self.dim, channels,
                                batch_size, self.channel_copies)  # fmt: skip
        return Deferred(self.patch_size, self.in_plane, parameters)

    def apply(self, data: np.ndarray, seg: np.ndarray, drawn: Deferred) -> dict[str, Any]:
        """Augment ``data`` ``(B, C, *cut)`` and ``seg`` ``(B, 1, *cut)`` as drawn."""
        pairs = [
            augment_sample(d, s, p, drawn.patch_size, drawn.in_plane)
            for d, s, p in zip(data, seg, drawn.parameters, strict=True)
        ]
        return {"data": np.stack([p[0] for p in pairs]), "seg": np.stack([p[1] for p in pairs])}

    def __call__(
        self, data: np.ndarray, seg: np.ndarray, rng: np.random.Generator
    ) -> dict[str, Any]:
        """Draw and apply: ``{"data": (B, C, *patch), "seg": (B, 1, *patch)}``."""
        return self.apply(data, seg, self.draw(rng, len(data), data.shape[1]))


def build_transforms(
    augmentation: Augmentation | dict[str, Any] | None,
    patch_size: Sequence[int],
    dim: int,
    channel_copies: int = 1,
) -> CpuAugmentation:
    """The CPU augmentation of one configuration.

    Args:
        augmentation: the plans' ``augmentation`` entry (None: the defaults).
        patch_size: output patch ``(Pz, Py, Px)`` or ``(Py, Px)``.
        dim: 3 for 3D patches, 2 for 2D / 2.5D slice stacks.
        channel_copies: see :class:`CpuAugmentation`.
    """
    patch = tuple(int(p) for p in patch_size)
    return CpuAugmentation(resolve(augmentation, dim), patch, dim, int(channel_copies))
