"""Stacks of adjacent slices for 2D and 2.5D networks (the 2d_lcnn and 2.5d_unet input).

A network with ``k`` slices (``k`` odd) segments slice ``z`` from slices ``z - k//2 ..
z + k//2`` of every image channel, given as channels in slice-major order
(``[slice0: c0..cC-1, slice1: c0..cC-1, ...]``, as :mod:`autoseg.networks.lcnn` and
:mod:`autoseg.networks.unet25d` document).

Edge convention: beyond the first and last slice the stack is zero (``zero``), exactly as
the training loader pads (:mod:`autoseg.training.sampling`: 0 is the background value of
normalised images), so a network sees at test time what it saw in training; ``replicate``
(repeat the edge slice) is available for networks trained that way.
"""

from __future__ import annotations

import torch

SLICE_PADDINGS = ("replicate", "zero")


def slice_stack(
    image: torch.Tensor,
    z: int,
    slices: int,
    padding: str = "zero",
    region: tuple[slice, slice] = (slice(None), slice(None)),
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The network input for slice ``z``: ``(C * k, Y, X)`` in slice-major channel order.

    Only the requested in-plane ``region`` is copied, never the whole volume.

    Args:
        image: ``(C, Z, Y, X)``.
        z: the slice to segment.
        slices: k, the number of adjacent slices (odd).
        padding: ``zero`` (default, as in training) or ``replicate`` (repeat edge slices).
        region: in-plane ``(y, x)`` slices of the window.
        out: optional contiguous ``(C * k, y, x)`` tensor to fill (any float dtype), so
            a caller can reuse one batch buffer instead of allocating per window.

    Returns:
        ``out``, or a new tensor on the image's device.
    """
    if slices < 1 or slices % 2 == 0:
        raise ValueError(f"the slice count must be odd and positive, got {slices}")
    if padding not in SLICE_PADDINGS:
        raise ValueError(f"unknown slice padding '{padding}'; known: {', '.join(SLICE_PADDINGS)}")
    depth, channels = image.shape[1], image.shape[0]
    window = image[:, :, region[0], region[1]]  # a view: (C, Z, y, x)
    if out is None:
        out = torch.empty((channels * slices, *window.shape[2:]), dtype=image.dtype)
        out = out.to(image.device)
    stack = out.view(slices, channels, *window.shape[2:])  # slice-major: (k, C, y, x)
    for position, index in enumerate(range(z - slices // 2, z + slices // 2 + 1)):
        if padding == "zero" and not 0 <= index < depth:
            stack[position].zero_()
        else:
            stack[position].copy_(window[:, min(max(index, 0), depth - 1)])
    return out
