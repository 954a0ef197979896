"""Tiny configurations of every registered network, for fast CPU tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoseg.networks import build_network

TINY_LCNN = {
    "local_features": [4, 8, 16],
    "attention_heads": 2,
    "global_layers": [1, 1, 1, 1],
    "global_groups": 2,
    "global_width_per_group": 32,
    "global_base_channels": 8,
    "global_decoder_features": 8,
}

# name -> (kwargs, an anisotropic / non-square patch, a patch violating the divisors)
TINY = {
    "3d_hybrid": (
        {
            "in_channels": 2,
            "num_classes": 3,
            "stage_features": [4, 8, 16],
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
            "blocks_per_stage": [1, 2, 1],
            "groups": 2,
            "transformer_depth": 1,
            "transformer_heads": 2,
        },
        (6, 12, 20),
        (5, 12, 20),
    ),
    "2.5d_unet": (
        {"in_channels": 3, "num_classes": 2, "base_features": 4, "num_levels": 3},
        (12, 20),
        (12, 18),
    ),
    "2d_lcnn": (
        {"in_channels": 3, "num_classes": 2, **TINY_LCNN},
        (32, 64),
        (48, 64),
    ),
}


def tiny_network(name: str, seed: int | None = 0, **overrides: object) -> nn.Module:
    """The tiny configuration of ``name`` (kwargs overridable)."""
    kwargs = {**TINY[name][0], "seed": seed, **overrides}
    return build_network({"name": name, "kwargs": kwargs})


def tiny_input(name: str, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """A random input batch at the tiny configuration's patch."""
    kwargs, patch, _ = TINY[name]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, kwargs["in_channels"], *patch, generator=generator)


@pytest.fixture(params=sorted(TINY))
def name(request: pytest.FixtureRequest) -> str:
    return request.param
