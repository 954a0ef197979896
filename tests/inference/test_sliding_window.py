"""Sliding-window inference: coverage, normalisation, padding, identity, slice-wise mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoseg.inference.slices import slice_stack
from autoseg.inference.sliding_window import sliding_window_inference


def identity_conv(channels: int, dim: int = 3) -> nn.Module:
    """A 1x1 convolution with identity weights: output = input."""
    conv = (nn.Conv3d if dim == 3 else nn.Conv2d)(channels, channels, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(channels):
            conv.weight[(c, c, *([0] * dim))] = 1.0
    return conv.eval()


def random_conv(in_channels: int, out_channels: int, dim: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv = (nn.Conv3d if dim == 3 else nn.Conv2d)(in_channels, out_channels, 3, padding=1)
    return conv.eval()


def test_patch_larger_than_volume_is_one_forward_pass_on_the_padded_volume() -> None:
    net = random_conv(1, 2)
    image = torch.randn(1, 5, 6, 7)
    result = sliding_window_inference(net, image, (8, 8, 8), 2)
    # centred zero padding up to the patch: (3, 2, 1) voxels on z, y, x
    padded = F.pad(image, (0, 1, 1, 1, 1, 2))
    with torch.no_grad():
        expected = net(padded[None])[0][:, 1:6, 1:7, 0:7]
    assert result.shape == (2, 5, 6, 7)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gaussian", [True, False])
def test_constant_output_is_exactly_normalised(gaussian: bool) -> None:
    def ones(x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 3, *x.shape[2:])

    image = torch.zeros(1, 20, 23, 17)
    result = sliding_window_inference(ones, image, (8, 8, 8), 3, step=0.5, gaussian=gaussian)
    assert result.shape == (3, 20, 23, 17)
    torch.testing.assert_close(result, torch.ones_like(result), rtol=0, atol=1e-6)


def test_identity_network_returns_its_input() -> None:
    image = torch.randn(2, 13, 21, 18)
    result = sliding_window_inference(
        identity_conv(2), image, (6, 8, 8), 2, step=0.5, batch_size=3, sigma_scale=0.125
    )
    torch.testing.assert_close(result, image, rtol=1e-5, atol=1e-5)


def test_every_window_is_forwarded_once_in_batches() -> None:
    calls: list[int] = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    sliding_window_inference(counting, torch.zeros(1, 100, 65, 64), (64, 64, 64), 1, batch_size=4)
    assert calls == [4, 2]  # 3 * 2 * 1 windows


def test_float16_input_is_predicted_in_float32() -> None:
    image = torch.randn(1, 9, 9, 9).half()
    result = sliding_window_inference(identity_conv(1), image, (4, 4, 4), 1)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, image.float(), rtol=1e-5, atol=1e-5)


def test_wrong_output_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="does not match"):
        sliding_window_inference(lambda x: x, torch.zeros(1, 8, 8, 8), (4, 4, 4), 2)


def manual_stack(volume: np.ndarray, z: int, k: int, mode: str = "constant") -> np.ndarray:
    """Slice-major stack built independently with numpy's padding (zero by default)."""
    half = k // 2
    padded = np.pad(volume, ((0, 0), (half, half), (0, 0), (0, 0)), mode=mode)
    stack = padded[:, z : z + k]  # (C, k, Y, X)
    return stack.transpose(1, 0, 2, 3).reshape(-1, *volume.shape[2:])


def test_slice_stack_is_slice_major_with_replicated_edges() -> None:
    volume = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).reshape(2, 4, 2, 3)
    for z in range(4):
        expected = manual_stack(volume.numpy(), z, 3, mode="edge")
        replicated = slice_stack(volume, z, 3, padding="replicate")
        np.testing.assert_array_equal(replicated.numpy(), expected)
    first = slice_stack(volume, 0, 3)  # zero padding by default, as training pads
    assert torch.all(first[:2] == 0) and torch.equal(
        first[2:], volume[:, :2].transpose(0, 1).reshape(4, 2, 3)
    )


@pytest.mark.parametrize("patch", [(8, 8), (16, 12)])
def test_slicewise_2d_mode_matches_a_manual_per_slice_loop(patch: tuple[int, int]) -> None:
    net = random_conv(3, 2, dim=2, seed=1)
    volume = torch.randn(1, 5, 13, 11)
    result = sliding_window_inference(net, volume, patch, 2, slices=3, batch_size=7)
    assert result.shape == (2, 5, 13, 11)
    for z in range(5):
        stack = torch.from_numpy(manual_stack(volume.numpy(), z, 3))
        expected = sliding_window_inference(net, stack, patch, 2)
        torch.testing.assert_close(result[:, z], expected, rtol=1e-5, atol=1e-5)
