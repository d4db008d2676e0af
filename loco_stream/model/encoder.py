"""Unimodal encoder: convolutional projection, position encoding, local self-attention."""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    BiasedAttention,
    DropPath,
    FeedForward,
    MaskedConv1d,
    band_bias,
    key_padding_bias,
    sinusoidal_positions,
)

MAX_POSITIONS = 4096  # longest sequence the encoder is meant for (steps)


class LocalSelfAttentionBlock(nn.Module):
    """Pre-LN transformer block whose attention sees only keys within ``radius`` steps."""

    def __init__(self, dim: int, num_heads: int, radius: int, drop_path: float) -> None:
        super().__init__()
        self.radius = radius
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = BiasedAttention(dim, num_heads)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = band_bias(x.shape[1], self.radius, x.device) + key_padding_bias(mask)
        normed = self.norm_attention(x)
        x = x + self.drop_path(self.attention(normed, normed, bias))
        x = x + self.drop_path(self.ffn(self.norm_ffn(x)))
        return x * mask[..., None]  # (B, T, D)


class UnimodalEncoder(nn.Module):
    """(B, T, C_in) features of one modality -> (B, T, D) contextual embeddings.

    Projection: ``num_proj_layers`` x (masked Conv1d k=3, LayerNorm, ReLU); then a sinusoidal
    position encoding; then ``num_blocks`` local self-attention blocks.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_heads: int,
        num_proj_layers: int,
        num_blocks: int,
        radius: int,
        drop_path: float,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [dim] * num_proj_layers
        self.projection = nn.ModuleList(
            MaskedConv1d(dims[i], dims[i + 1]) for i in range(num_proj_layers)
        )
        self.projection_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_proj_layers))
        self.blocks = nn.ModuleList(
            LocalSelfAttentionBlock(dim, num_heads, radius, drop_path) for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.projection, self.projection_norms, strict=True):
            x = torch.relu(norm(conv(x, mask)))  # (B, T, D)
        x = (x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)) * mask[..., None]
        for block in self.blocks:
            x = block(x, mask)
        return x
