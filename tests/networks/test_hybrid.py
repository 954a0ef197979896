"""3d_hybrid: scaling, reduction to a plain residual U-Net, anisotropy, checkpointing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoseg.core.errors import InvalidInputError
from autoseg.networks.hybrid import HybridUNet3D

PLAIN = {"se": False, "attention_gates": False, "transformer_depth": 0, "groups": 1}
SMALL = {"stage_features": [4, 8, 16], "blocks_per_stage": [1, 2, 2], "seed": 0}


def test_parameter_count_spans_half_a_million_to_over_22_million() -> None:
    small = HybridUNet3D(1, 2, [12, 24, 48, 96], blocks_per_stage=[1, 1, 1, 1], transformer_depth=0)
    large = HybridUNet3D(
        1, 2, [32, 64, 128, 256, 320, 320], transformer_depth=2, transformer_heads=8
    )
    assert 0.4e6 < small.parameter_count() < 0.6e6
    assert large.parameter_count() > 22e6
    deeper = HybridUNet3D(
        1, 2, [12, 24, 48, 96], blocks_per_stage=[1, 1, 1, 1], transformer_depth=2
    )
    assert deeper.parameter_count() > small.parameter_count()


def test_reduced_configuration_is_a_plain_residual_unet() -> None:
    plain = HybridUNet3D(1, 2, **SMALL, **PLAIN)
    allowed = (nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.LeakyReLU)
    leaves = [m for m in plain.modules() if not list(m.children())]
    assert all(isinstance(m, allowed) for m in leaves)
    assert all(m.groups == 1 for m in leaves if isinstance(m, nn.Conv3d))


def test_transformer_depth_zero_equals_the_plain_path() -> None:
    """The transformer is purely additive: with identity blocks the rest is the plain net."""
    plain = HybridUNet3D(1, 2, **SMALL, **PLAIN).eval()
    hybrid = HybridUNet3D(1, 2, **{**SMALL, **PLAIN, "transformer_depth": 2, "seed": 9}).eval()
    missing, unexpected = hybrid.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("transformer.") for k in missing)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(hybrid(x), plain(x))  # the transformer does act...
        nn.init.zeros_(hybrid.transformer.position.weight)
        nn.init.zeros_(hybrid.transformer.position.bias)
        for block in hybrid.transformer.blocks:
            block.zero_residual()
        torch.testing.assert_close(hybrid(x), plain(x), rtol=0, atol=1e-6)  # ...and only it


def test_anisotropic_strides_pool_in_plane_first() -> None:
    net = HybridUNet3D(
        1,
        2,
        [4, 8, 16, 16],
        strides=[[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]],
        kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
        transformer_depth=1,
        transformer_heads=2,
    )
    assert net.divisors == (2, 8, 8)
    shapes = [o.shape[2:] for o in net(torch.randn(1, 1, 6, 24, 40))]
    assert shapes == [(6, 24, 40), (6, 12, 20), (6, 6, 10)]
    with pytest.raises(InvalidInputError, match="along Y is not divisible by 8"):
        net(torch.randn(1, 1, 6, 20, 40))


def test_bad_configuration_rejected() -> None:
    with pytest.raises(InvalidInputError, match="strides has 2 entries for 3 stages"):
        HybridUNet3D(1, 2, [4, 8, 16], strides=[1, 2])
    with pytest.raises(InvalidInputError, match="first stage must have stride 1"):
        HybridUNet3D(1, 2, [4, 8], strides=[2, 2])
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        HybridUNet3D(1, 2, [4, 8, 16], transformer_depth=1, transformer_heads=3)


def test_two_dimensional_use() -> None:
    net = HybridUNet3D(3, 2, [4, 8, 16], kernel_sizes=[[3, 3]] * 3, transformer_heads=2)
    assert net.dim == 2 and net(torch.randn(2, 3, 16, 12))[0].shape == (2, 2, 16, 12)


def test_checkpointing_changes_memory_not_results() -> None:
    x = torch.randn(1, 1, 8, 8, 8)
    results = []
    for checkpointing in (False, True):
        net = HybridUNet3D(1, 2, **SMALL, transformer_heads=2, checkpointing=checkpointing)
        outputs = net(x)
        sum(o.square().mean() for o in outputs).backward()
        results.append((outputs[0].detach(), net.stem[0].weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
