"""2d_lcnn: alignment geometry, mirror equivariance of the local path, fusion, weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autoseg.core.errors import InvalidInputError
from autoseg.networks.alignment import asymmetry, inverse_matrix, rigid_matrix, warp
from autoseg.networks.lcnn import SliceStackConv3d
from autoseg.networks.resnext import ResNeXtTrunk
from tests.networks.conftest import tiny_network


def head(height: int, width: int, angle: float = 0.0, shift: tuple = (0.0, 0.0)) -> torch.Tensor:
    """A smooth left-right symmetric 'head' rotated by ``angle``, shifted (normalised units)."""
    py = torch.arange(height, dtype=torch.float64).view(-1, 1) - (height - 1) / 2
    px = torch.arange(width, dtype=torch.float64).view(1, -1) - (width - 1) / 2
    px, py = px - shift[0] * width / 2, py - shift[1] * height / 2
    qx = math.cos(angle) * px + math.sin(angle) * py  # R(-angle) p
    qy = -math.sin(angle) * px + math.cos(angle) * py
    a, b = 0.3 * width, 0.4 * height
    skull = torch.sigmoid(4 * (1 - (qx / a) ** 2 - (qy / b) ** 2))
    ventricle = torch.exp(-(((qx.abs() - a / 3) / 3) ** 2) - ((qy + b / 4) / 5) ** 2)
    return (skull + ventricle).float()[None, None]  # (1, 1, Y, X)


def transform(angle: float, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    return torch.tensor([[angle, tx, ty]])


def test_rotation_is_rigid_in_pixels_on_non_square_images() -> None:
    yy, xx = torch.meshgrid(torch.arange(48.0) - 23.5, torch.arange(96.0) - 47.5, indexing="ij")
    disc = torch.sigmoid(2 * (15 - (xx**2 + yy**2).sqrt()))[None, None]
    rotated = warp(disc, rigid_matrix(transform(0.7), 48, 96))
    assert (rotated - disc).abs().max() < 0.05  # a disc stays a disc, not an ellipse


def test_inverse_warp_undoes_the_warp() -> None:
    image = head(64, 64)
    t = transform(0.3, 0.1, -0.05)
    moved = warp(image, rigid_matrix(t, 64, 64))
    back = warp(moved, inverse_matrix(t, 64, 64))
    assert (moved - image).abs().mean() > 0.05
    assert (back - image)[..., 8:-8, 8:-8].abs().mean() < 0.01


def test_set_alignment_brings_a_rotated_head_to_the_midline() -> None:
    angle, shift = 0.35, (0.1, -0.05)
    tilted = head(64, 96, angle, shift)
    aligned = warp(tilted, rigid_matrix(transform(angle, *shift), 64, 96))
    centred = warp(tilted, rigid_matrix(transform(0.0, *shift), 64, 96))
    wrong = warp(tilted, rigid_matrix(transform(-angle, *shift), 64, 96))
    assert asymmetry(wrong) > asymmetry(centred) > 5 * asymmetry(aligned)
    assert (aligned - head(64, 96))[..., 8:-8, 8:-8].abs().max() < 0.05  # back in place


def test_alignment_starts_at_identity() -> None:
    net = tiny_network("2d_lcnn")
    x = torch.randn(2, 3, 32, 64)
    t = net.local.align(x)
    assert torch.equal(t, torch.zeros(2, 3))
    stack = net.local.aligned_stack(x, t)  # (B, C, S, Y, X)
    torch.testing.assert_close(stack[:, 0], x, atol=1e-5, rtol=0)


def _perturbed_local(mirror_symmetric: bool) -> torch.nn.Module:
    net = tiny_network("2d_lcnn", mirror_symmetric=mirror_symmetric).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a non-identity alignment, non-zero key embeddings
        for p in net.local.parameters():
            p.add_(0.1 * torch.randn_like(p))
        net.local.align.odd.weight.normal_(0.0, 3.0)
    return net.local


def test_local_path_is_mirror_equivariant() -> None:
    """Tested on the local path (SEAN) only; the global ResNeXt path is not equivariant."""
    local = _perturbed_local(mirror_symmetric=True)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        out, _, t = local(x, all_scales=True)
        out_m, _, t_m = local(x.flip(-1), all_scales=True)
    assert t[0, 0].abs() > 1e-3  # the alignment is not the identity here
    torch.testing.assert_close(t_m, t * torch.tensor([-1.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    for logits, logits_m in zip(out, out_m, strict=True):
        torch.testing.assert_close(logits_m, logits.flip(-1), atol=1e-3, rtol=1e-3)


def test_unconstrained_kernels_break_equivariance() -> None:
    local = _perturbed_local(mirror_symmetric=False)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        out = local(x, all_scales=False)[0][0]
        out_m = local(x.flip(-1), all_scales=False)[0][0]
    assert (out_m - out.flip(-1)).abs().max() > 1e-2


def test_slice_axis_survives_to_the_bottleneck() -> None:
    net = tiny_network("2d_lcnn")
    encoder = [m for m in net.feature_maps((32, 64)) if m.name.startswith("local.encoder")]
    assert encoder and all(m.shape[1] == 3 for m in encoder)  # (C, S, y, x), S = 3
    assert {m.shape[2:] for m in encoder} == {(32, 64), (16, 32), (8, 16)}


def test_training_forward_exposes_aligned_slices_and_loss() -> None:
    net = tiny_network("2d_lcnn", in_channels=6, num_slices=3)
    with torch.no_grad():
        net.local.align.odd.weight.normal_(0, 1.0)
    x = torch.randn(2, 6, 32, 64)
    net(x)
    assert net.last_aligned.shape == (2, 2, 3, 32, 64)  # (B, C, S, Y, X)
    assert net.last_transform.shape == (2, 3)
    net.auxiliary_loss().backward()
    assert net.local.align.odd.weight.grad.abs().sum() > 0
    assert net.local.align.convs[0][0].parametrizations.weight.original.grad.abs().sum() > 0


def test_fusion_starts_at_seventy_thirty() -> None:
    net = tiny_network("2d_lcnn")
    torch.testing.assert_close(net.fusion_weights(), torch.tensor([0.7, 0.3]))


def test_slice_channel_mismatch_rejected() -> None:
    with pytest.raises(InvalidInputError, match="not a multiple of num_slices 3"):
        tiny_network("2d_lcnn", in_channels=7, num_slices=3)


def test_resnext50_trunk_has_torchvision_size_and_names() -> None:
    trunk = ResNeXtTrunk()
    assert sum(p.numel() for p in trunk.parameters()) == 22_979_904  # resnext50_32x4d - fc
    keys = trunk.state_dict().keys()
    for key in ("bn1.running_mean", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight"):
        assert key in keys


def test_global_weights_load_from_a_torchvision_style_file(tmp_path: object) -> None:
    donor = tiny_network("2d_lcnn", seed=3).global_path.trunk
    state = {**donor.state_dict(), "fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}
    path = tmp_path / "resnext.pth"
    torch.save(state, path)
    net = tiny_network("2d_lcnn", seed=4, global_weights=str(path))
    loaded = net.global_path.trunk.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in donor.state_dict().items())
    with pytest.raises(InvalidInputError, match="not found"):
        tiny_network("2d_lcnn", global_weights=str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(InvalidInputError, match="does not fit"):
        tiny_network("2d_lcnn", global_weights=str(path))


@pytest.mark.parametrize(("kernel", "padding"), [(3, 1), (1, 0), ((3, 1, 3), (1, 0, 1))])
def test_slice_stack_convolution_under_cpu_bf16_equals_the_3d_convolution(
    kernel: int | tuple, padding: int | tuple
) -> None:
    """The bf16 route folds the kernel's depth into 2D input channels; a wrong fold (slice
    order, channel order) would differ by the size of the output, not by rounding."""
    torch.manual_seed(0)
    conv = SliceStackConv3d(4, 6, kernel, padding=padding)
    x = torch.randn(2, 4, 3, 10, 8, requires_grad=True)
    expected = F.conv3d(x, conv.weight, conv.bias, padding=padding)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        routed = conv(x)
    assert routed.dtype == torch.bfloat16 and routed.shape == expected.shape
    scale = expected.abs().max().item()
    assert (routed.float() - expected).abs().max().item() < 0.03 * scale
    routed.float().sum().backward()  # the bf16 weight gradient runs as a 2D one
    assert conv.weight.grad is not None and x.grad is not None
    assert torch.equal(conv(x), expected)  # float32 keeps the native 3D path


def test_lcnn_bf16_forward_stays_close_to_float32() -> None:
    network = tiny_network("2d_lcnn").eval()
    x = torch.randn(2, network.in_channels, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = network(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = network(x).float()
    assert not torch.equal(rounded, reference)
    assert (rounded - reference).abs().max().item() < 0.1 * reference.abs().max().item()
