"""ONNX export of a network's eval-mode forward (full-resolution logits)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

SPATIAL_NAMES = ("z", "y", "x")


def export_onnx(
    network: nn.Module,
    in_channels: int,
    patch_size: Sequence[int],
    path: str | Path,
    dynamic_spatial: bool = True,
    opset: int = 17,
) -> Path:
    """Write ``network`` (in eval mode) to ``path`` as ONNX.

    Uses the TorchScript exporter, which handles every network here (grid sampling,
    attention) with dynamic axes; batch is always dynamic, spatial axes when
    ``dynamic_spatial`` (sizes must still be multiples of the network's divisors).
    The input is named ``image`` (B, in_channels, *patch), the output ``logits``.

    Args:
        network: any registered network.
        in_channels: channels of the example input.
        patch_size: spatial size of the example input (the plans' patch size).
        path: output file.
        dynamic_spatial: mark the spatial axes dynamic.
        opset: ONNX opset (>= 16 for grid sampling).

    Returns:
        The path written.
    """
    path = Path(path)
    was_training = network.training
    network.eval()
    example = torch.randn(1, in_channels, *patch_size)
    names = SPATIAL_NAMES[-len(patch_size) :]
    axes = {0: "batch"}
    if dynamic_spatial:
        axes.update({2 + i: name for i, name in enumerate(names)})
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and trace notes
            torch.onnx.export(
                network,
                (example,),
                str(path),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
                opset_version=opset,
            )
    finally:
        network.train(was_training)
    return path
