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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, queries: int | None = None
    ) -> torch.Tensor:
        """(B, T, D) -> (B, Q, D): the last ``queries`` steps (default all) attend to all T."""
        queries = x.shape[1] if queries is None else queries
        bias = band_bias(x.shape[1], self.radius, x.device, queries) + key_padding_bias(mask)
        normed = self.norm_attention(x)
        x = x[:, -queries:] + self.drop_path(self.attention(normed[:, -queries:], normed, bias))
        x = x + self.drop_path(self.ffn(self.norm_ffn(x)))
        return x * mask[:, -queries:, None]  # (B, Q, D)


class UnimodalEncoder(nn.Module):
    """(B, T, C_in) features of one modality -> (B, T, D) contextual embeddings.

    Projection: ``num_proj_layers`` x (masked Conv1d k=3, LayerNorm, ReLU); then, if
    ``positions``, a sinusoidal position encoding from the sequence's first step; then
    ``num_blocks`` local self-attention blocks.
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
        positions: bool,
    ) -> None:
        super().__init__()
        self.positions = positions
        dims = [in_dim] + [dim] * num_proj_layers
        self.projection = nn.ModuleList(
            MaskedConv1d(dims[i], dims[i + 1]) for i in range(num_proj_layers)
        )
        self.projection_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_proj_layers))
        self.blocks = nn.ModuleList(
            LocalSelfAttentionBlock(dim, num_heads, radius, drop_path) for _ in range(num_blocks)
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, queries: int | None = None
    ) -> torch.Tensor:
        """(B, T, C_in) -> (B, Q, D), the last ``queries`` steps (default all) of the last block."""
        for conv, norm in zip(self.projection, self.projection_norms, strict=True):
            x = torch.relu(norm(conv(x, mask)))  # (B, T, D)
        if self.positions:
            x = (x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)) * mask[..., None]
        for index, block in enumerate(self.blocks):
            x = block(x, mask, queries if index == len(self.blocks) - 1 else None)
        return x
