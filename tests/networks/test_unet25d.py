"""2.5d_unet: the classic Attention U-Net sizes and the centre-slice contract."""

from __future__ import annotations

import torch

from autoseg.networks.unet25d import AttentionUNet25D


def test_parameter_counts_match_the_classic_attention_unet() -> None:
    assert 7.5e6 < AttentionUNet25D(5, 2, base_features=32).parameter_count() < 8.5e6
    assert 30e6 < AttentionUNet25D(5, 2, base_features=64).parameter_count() < 32e6


def test_attention_gates_optional_and_active() -> None:
    gated = AttentionUNet25D(3, 2, base_features=4, num_levels=3, seed=0).eval()
    plain = AttentionUNet25D(3, 2, base_features=4, num_levels=3, attention_gates=False, seed=0)
    assert gated.parameter_count() > plain.parameter_count()
    assert not any("gate" in name for name, _ in plain.named_parameters())
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        # a closed gate (psi bias -> -inf) removes the skip's contribution entirely
        for stage in gated.decoder:
            torch.nn.init.constant_(stage.gate.psi.bias, -1e4)
        closed = gated(x)
        gated.decoder[-1].gate.psi.bias.fill_(0.0)
        assert not torch.allclose(closed, gated(x))
