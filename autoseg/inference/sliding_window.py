"""Sliding-window inference as a pure function (DESIGN §8).

A network sees windows of its patch size; their logits, weighted by a Gaussian importance
map that trusts window centres more than borders, are summed into one float32 map and
divided by the summed weights. Logits are accumulated (as nnU-Net does), not softmax: one
softmax at the end instead of one per window, and a weighted average of a network's own
logits keeps the identity "sliding window over an identity network returns its input".

Two modes, picked by the length of ``patch_size``:

- full-dimensional: a 3D patch on ``(C, Z, Y, X)`` (or a 2D patch on ``(C, Y, X)``);
- slice-wise: a 2D patch ``(Y, X)`` on a volume ``(C, Z, Y, X)``: every slice ``z`` is
  segmented from its stack of ``slices`` neighbours (see :mod:`autoseg.inference.slices`),
  windows of all slices batched together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from autoseg.inference.slices import slice_stack
from autoseg.inference.tiles import importance_factors, outer_product, tile_positions, weight_sum
from autoseg.plans import InferenceWindow

NetworkFn = Callable[[torch.Tensor], torch.Tensor]
# Voxels per forward pass when no batch size is given: a few 3D windows or a dozen 2D ones.
# Past that a batch gains nothing (slim 3D networks on a 2-core CPU: 260 ms per 61k-voxel
# window alone, 135 ms in fours, 145 ms in batches of 17, whose activations outgrow the
# caches) and only holds more memory.
AUTO_BATCH_VOXELS = 1 << 18


def network_logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution logits of a network output (a deep-supervision list's first)."""
    return output[0] if isinstance(output, list | tuple) else output


def _pad_to_window(
    image: torch.Tensor, window: Sequence[int]
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad axes smaller than the window (centred); the slices crop the padding back."""
    spatial = image.shape[1:]
    missing = [max(0, w - s) for s, w in zip(spatial, window, strict=True)]
    crop = tuple(slice(m // 2, m // 2 + s) for m, s in zip(missing, spatial, strict=True))
    if not any(missing):
        return image, (slice(None), *crop)
    pads = []
    for m in reversed(missing):  # F.pad takes the last axis first
        pads += [m // 2, m - m // 2]
    return F.pad(image, pads), (slice(None), *crop)


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def auto_batch_size(window: Sequence[int], tiles: int) -> int:
    """Windows per forward pass: about :data:`AUTO_BATCH_VOXELS` voxels, at least one."""
    return max(1, min(tiles, AUTO_BATCH_VOXELS // max(1, math.prod(window))))


def _window_filler(
    image: torch.Tensor, window: Sequence[int], slices: int | None, padding: str
) -> Callable[[tuple[int, ...], torch.Tensor], None]:
    """A function writing the network input of the window at a start corner into a buffer."""

    def region(start: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(s, s + w) for s, w in zip(start, window, strict=True))

    def fill_patch(start: tuple[int, ...], out: torch.Tensor) -> None:
        out.copy_(image[(slice(None), *region(start))])

    def fill_stack(start: tuple[int, ...], out: torch.Tensor) -> None:
        slice_stack(image, start[0], slices, padding, region(start)[1:], out)

    return fill_patch if slices is None else fill_stack


def _run_windows(
    network_fn: NetworkFn,
    fill: Callable[[tuple[int, ...], torch.Tensor], None],
    tiles: list[tuple[int, ...]],
    inputs: torch.Tensor,
    accumulator: torch.Tensor,
    importance: torch.Tensor,
    progress: bool,
) -> None:
    """Forward every window in batches and add its weighted logits into ``accumulator``.

    ``inputs`` is the preallocated batch buffer ``(batch, C_in, *network window)``; every
    batch is copied into it, so no per-window tensors are allocated on the input side.
    """
    num_classes, window = accumulator.shape[0], importance.shape
    bar = tqdm(total=len(tiles), unit="window", leave=False, disable=not progress)
    for batch in _batches(tiles, inputs.shape[0]):
        for start, buffer in zip(batch, inputs, strict=False):
            fill(start, buffer)
        logits = network_logits(network_fn(inputs[: len(batch)]))
        head, spatial = tuple(logits.shape[:2]), tuple(logits.shape[2:])
        if head != (len(batch), num_classes) or spatial not in (tuple(window), tuple(window[1:])):
            expected = (len(batch), num_classes, *window)
            raise ValueError(f"network output {tuple(logits.shape)} does not match {expected}")
        logits = logits.float().reshape(len(batch), num_classes, *window)
        for start, tile_logits in zip(batch, logits, strict=True):
            region = tuple(slice(s, s + w) for s, w in zip(start, window, strict=True))
            # weight and add in one pass over the window, without a temporary
            accumulator[(slice(None), *region)].addcmul_(tile_logits, importance)
        bar.update(len(batch))
    bar.close()


def sliding_window_inference(
    network_fn: NetworkFn,
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    step: float = InferenceWindow.step,
    batch_size: int | None = None,
    gaussian: bool = InferenceWindow.gaussian,
    sigma_scale: float = InferenceWindow.gaussian_sigma_scale,
    device: torch.device | str | None = None,
    progress: bool = False,
    slices: int = 1,
    slice_padding: str = "zero",
) -> torch.Tensor:
    """Gaussian-weighted average of a network's logits over overlapping windows.

    Args:
        network_fn: maps a batch ``(B, C_in, *patch_size)`` to logits ``(B, num_classes,
            *patch_size)`` (a deep-supervision list is accepted; its first entry is used).
            In slice-wise mode ``C_in = C * slices``. Called under ``torch.inference_mode``.
        image: ``(C, *spatial)``; float32 or float16 (windows are cast to float32).
        patch_size: the network's window; one axis fewer than ``spatial`` selects the
            slice-wise mode for 2D networks on a volume.
        num_classes: K, the network's output channels.
        step: window stride as a fraction of the patch (0.5: windows overlap by half).
        batch_size: windows per forward pass; None picks :func:`auto_batch_size`.
        gaussian: weight window voxels by a Gaussian (else uniformly).
        sigma_scale: Gaussian sigma as a fraction of the patch size.
        device: where the network runs and the accumulator lives (default: the image's).
        progress: show a progress bar over windows.
        slices: k adjacent slices per 2D input (slice-wise mode only; odd).
        slice_padding: ``zero`` (as training pads) or ``replicate`` beyond the end slices.

    Returns:
        Logits ``(K, *spatial)`` float32 on ``device`` (an inference-mode tensor: modify it
        in place only inside ``torch.inference_mode``).
    """
    spatial = tuple(image.shape[1:])
    slicewise = len(patch_size) == len(spatial) - 1
    if not slicewise and len(patch_size) != len(spatial):
        raise ValueError(f"patch {tuple(patch_size)} does not fit image shape {image.shape}")
    device = torch.device(device) if device is not None else image.device
    window = (1, *patch_size) if slicewise else tuple(int(p) for p in patch_size)
    with torch.inference_mode():
        padded, crop = _pad_to_window(image.to(device), window)
        shape = tuple(padded.shape[1:])
        tiles = tile_positions(shape, window, step)
        factors = importance_factors(window, gaussian, sigma_scale)
        accumulator = torch.zeros((num_classes, *shape), dtype=torch.float32, device=device)
        fill = _window_filler(padded, window, slices if slicewise else None, slice_padding)
        batch = min(batch_size or auto_batch_size(window, len(tiles)), len(tiles))
        channels = padded.shape[0] * (slices if slicewise else 1)
        net_window = window[1:] if slicewise else window
        inputs = torch.empty((batch, channels, *net_window), dtype=torch.float32, device=device)
        importance = outer_product(factors).to(device)
        _run_windows(network_fn, fill, tiles, inputs, accumulator, importance, progress)
        accumulator /= weight_sum(shape, window, step, factors).to(device)
        logits = accumulator[crop]
        return logits if logits.is_contiguous() else logits.contiguous()
