"""Transformer blocks for the lowest-resolution feature maps (global context).

Positional information comes from a depthwise convolution added to the features before
the first block (a conditional positional encoding, Chu et al., 2021): it works for any
spatial size, so patches of any shape and sliding-window inference at other sizes need
no interpolated position tables, and it exports to ONNX with dynamic axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoseg.networks.blocks import conv_type


class TransformerBlock(nn.Module):
    """Pre-norm multi-head self-attention + MLP on tokens (B, N, C), both residual.

    The output projections are what ``zero_residual`` zeroes: a block whose projections
    are zero is the identity, which tests use to show the network reduces to its
    convolutional path.
    """

    def __init__(self, channels: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if channels % heads:
            raise ValueError(f"transformer width {channels} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention of (B, N, C) tokens."""
        b, n, c = tokens.shape
        qkv = self.qkv(tokens).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attention(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))

    def zero_residual(self) -> None:
        """Make the block the identity (used by tests and for a gentle start)."""
        for layer in (self.proj, self.mlp[2]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


class BottleneckTransformer(nn.Module):
    """Convolutional positional encoding + ``depth`` transformer blocks on (B, C, *S).

    Args:
        dim: 2 or 3 spatial dimensions.
        channels: feature width C (divisible by ``heads``).
        depth: number of transformer blocks (>= 1).
        heads: attention heads.
    """

    def __init__(self, dim: int, channels: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.position = conv_type(dim)(channels, channels, 3, padding=1, groups=channels)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, heads, mlp_ratio) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens.transpose(1, 2).reshape(shape)
