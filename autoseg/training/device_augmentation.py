"""The device augmentation path: torch on the training device, the whole batch at once.

The loader workers only read and cut the larger box of
:func:`~autoseg.training.augmentation.sample_size` and draw each sample's parameters with
the sampler the CPU path uses (:func:`~autoseg.training.augmentation.draw_parameters`);
the Trainer calls :func:`augment_on_device` after the host-to-device copy. Rotation,
scaling and elastic deformation become one sampling grid per sample (``affine_grid`` plus
an upsampled coarse displacement field) and one ``grid_sample`` for the batch: bilinear
for images, nearest for labels. ``align_corners=True`` throughout, so normalised
coordinate -1 / +1 are the centres of the first / last voxel, which is what makes the
identity transform reproduce the input's centre crop.

Deep-supervision targets need nothing here: the loss downsamples the augmented target
(:func:`~autoseg.training.losses.downsample_target`), as it does for the CPU path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from autoseg.training.augmentation import ChannelOps, Deferred, SampleParameters, channel_intensity
from autoseg.training.cpu_augmentation import full_matrix
from autoseg.training.sampling import SEG_PAD

EPSILON = 1e-7
BLUR_TRUNCATE = 4.0  # kernel radius in sigmas, scipy's gaussian_filter default


def _normalised(sizes: Sequence[int]) -> torch.Tensor:
    return torch.tensor([max(n - 1, 1) / 2 for n in sizes], dtype=torch.float64)


def theta(params: SampleParameters, cut: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """The ``affine_grid`` matrix ``(d, d + 1)`` of one sample, in torch's (x, y, z) order:
    ``D_cut^-1 M D_patch`` maps normalised output to normalised input coordinates about
    the centres (``M`` the voxel-space map; no translation: both boxes share a centre)."""
    matrix = torch.from_numpy(full_matrix(params, len(patch)))
    scaled = torch.diag(1 / _normalised(cut)) @ matrix @ torch.diag(_normalised(patch))
    flipped = scaled.flip(0).flip(1)  # array (z, y, x) order to torch's (x, y, z)
    return torch.cat([flipped, torch.zeros(len(patch), 1, dtype=flipped.dtype)], 1)


def displacement(
    params: SampleParameters, cut: Sequence[int], patch: Sequence[int], device: torch.device
) -> torch.Tensor:
    """The elastic field ``(*patch, d)`` in normalised (x, y, z) units: the coarse field
    upsampled linearly (corners on corners), constant along Z for in-plane 3D."""
    moved = patch[len(patch) - params.axes :]
    coarse = torch.as_tensor(params.elastic, dtype=torch.float32, device=device)[None]
    mode = "bilinear" if params.axes == 2 else "trilinear"
    field = F.interpolate(coarse, size=tuple(moved), mode=mode, align_corners=True)[0]
    if params.axes < len(patch):  # in-plane: no Z displacement, the same for every slice
        field = torch.cat([torch.zeros_like(field[:1]), field])[:, None].expand(
            -1, patch[0], -1, -1
        )
    scale = (1 / _normalised(cut)).to(device=device, dtype=torch.float32)
    field = field * scale.reshape(-1, *[1] * len(patch))
    return field.flip(0).movedim(0, -1)


def sampling_grid(drawn: Deferred, cut: Sequence[int], device: torch.device) -> torch.Tensor:
    """The batch's grid ``(B, *patch, d)`` of normalised input coordinates."""
    patch = drawn.patch_size
    thetas = torch.stack([theta(p, cut, patch) for p in drawn.parameters]).float()
    size = (len(drawn.parameters), 1, *patch)
    grid = F.affine_grid(thetas.to(device), size, align_corners=True)
    for index, params in enumerate(drawn.parameters):
        if params.elastic is not None:
            grid[index] += displacement(params, cut, patch, device)
    return grid


def centre_crop(tensor: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """The centred ``patch`` of the trailing axes (the cut grows evenly)."""
    starts = [(n - p) // 2 for n, p in zip(tensor.shape[-len(patch) :], patch, strict=True)]
    return tensor[(..., *[slice(s, s + p) for s, p in zip(starts, patch, strict=True)])]


def spatial(
    data: torch.Tensor, target: torch.Tensor, drawn: Deferred
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``data`` ``(B, C, *cut)`` and ``target`` ``(B, 1, *cut)`` to the patch;
    outside the cut images read 0 and labels -1 (as the CPU path pads)."""
    if not any(p.spatial for p in drawn.parameters):
        return centre_crop(data, drawn.patch_size), centre_crop(target, drawn.patch_size).long()
    grid = sampling_grid(drawn, data.shape[2:], data.device)
    image = F.grid_sample(data.float(), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=True)  # fmt: skip
    shifted = (target - SEG_PAD).float()  # pad 0 after the shift is the label pad -1
    labels = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros",
                           align_corners=True)  # fmt: skip
    return image, labels.round().long() + SEG_PAD


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one channel ``(*P)`` over every axis, mirrored at the
    border without repeating the edge voxel (scipy's ``mode="mirror"``, as the CPU path)."""
    radius = int(BLUR_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).reshape(1, 1, -1)
    out = image
    for axis in range(image.ndim):
        moved = out.movedim(axis, -1)
        lines = moved.reshape(-1, 1, moved.shape[-1])
        lines = F.pad(
            lines, (radius, radius), mode="reflect" if radius < lines.shape[-1] else "replicate"
        )
        moved = F.conv1d(lines, kernel).reshape(moved.shape)
        out = moved.movedim(-1, axis)
    return out


def low_resolution(image: torch.Tensor, zoom: float, ignore_first: bool) -> torch.Tensor:
    """Downsample one channel linearly by ``zoom`` and back by nearest neighbour."""
    shape = list(image.shape)
    small = [max(1, round(n * zoom)) for n in shape]
    if ignore_first:
        small[0] = shape[0]
    mode = "bilinear" if image.ndim == 2 else "trilinear"
    down = F.interpolate(image[None, None], size=small, mode=mode, align_corners=False)
    return F.interpolate(down, size=shape, mode="nearest")[0, 0]


def gamma(image: torch.Tensor, value: float) -> torch.Tensor:
    """Gamma on the [0, 1]-rescaled channel, then its mean and std restored."""
    mean, std = image.mean(), image.std(correction=0)
    low, span = image.min(), image.max() - image.min()
    out = torch.pow((image - low) / (span + EPSILON), value) * span + low
    return (out - out.mean()) / (out.std(correction=0) + 1e-8) * std + mean


TORCH_OPS = ChannelOps(blur=gaussian_blur, clip=torch.clamp, low_resolution=low_resolution,
                       gamma=gamma)  # fmt: skip


def intensity(sample: torch.Tensor, params: SampleParameters, in_plane: bool) -> torch.Tensor:
    """Noise, blur, brightness, contrast, low resolution, gamma on one sample ``(C, *P)``,
    in the CPU path's order and with its formulas."""
    out = sample.clone()
    if params.noise is not None:
        std, seed = params.noise
        generator = torch.Generator(device=out.device).manual_seed(seed)
        out += std * torch.randn(out.shape, generator=generator, device=out.device)
    return channel_intensity(out, params, in_plane, TORCH_OPS)


def augment(
    data: torch.Tensor, target: torch.Tensor, drawn: Deferred
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole augmentation of a batch on its device.

    Args:
        data: float ``(B, C, *cut)``.
        target: integer ``(B, 1, *cut)`` (int8 from the loader), -1 = ignore.
        drawn: the parameters the loader drew for the batch.

    Returns:
        ``(B, C, *patch)`` float32 images and ``(B, 1, *patch)`` int64 labels.
    """
    image, labels = spatial(data, target, drawn)
    samples, masks = [], []
    for index, params in enumerate(drawn.parameters):
        sample = intensity(image[index], params, drawn.in_plane)
        mask = labels[index]
        if params.mirror:
            axes = [1 + a for a in params.mirror]
            sample, mask = sample.flip(axes), mask.flip(axes)
        samples.append(sample)
        masks.append(mask)
    return torch.stack(samples).contiguous(), torch.stack(masks).contiguous()


def augment_on_device(batch: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's batch transform: augment a deferred batch already on the device
    (batches without ``"augmentation"`` pass unchanged)."""
    drawn = batch.get("augmentation")
    if drawn is None:
        return batch
    data, target = augment(batch["data"], batch["target"], drawn)
    rest = {k: v for k, v in batch.items() if k != "augmentation"}
    return {**rest, "data": data, "target": target}
