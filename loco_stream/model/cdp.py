"""CDP: Cross-modal Dynamic Perception, local cross-attention with a data-driven window.

Each query step ``i`` attends only to context steps inside the hard band ``|j - i| <= R``. Within
the band, each query (and each head) predicts a relative width ``s_i`` in (0, 1] and a centre shift
``d_i`` in (-R/2, R/2), which shape its logits with a Gaussian bias

    bias_ij = -(j - i - d_i)^2 / (2 (s_i R)^2)

so a query inside a short event can look narrowly and one inside a long event widely, at every
pyramid level. ``radius=None`` gives plain dense cross-attention (the UnAV baseline and ``no_cdp``).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    BiasedAttention,
    DropPath,
    FeedForward,
    band_bias,
    key_padding_bias,
    relative_positions,
)

MIN_WIDTH = 0.05  # smallest relative width s_i: keeps the bias bounded (fp16-safe)


class DynamicWindow(nn.Module):
    """Predicts per-query, per-head Gaussian window biases ``(B, H, T, T)`` inside radius R."""

    def __init__(self, dim: int, num_heads: int, radius: int) -> None:
        super().__init__()
        self.radius = radius
        self.num_heads = num_heads
        self.predict = nn.Linear(dim, 2 * num_heads)
        nn.init.zeros_(self.predict.weight)
        nn.init.zeros_(self.predict.bias)  # start at width 0.5 R, no shift

    def forward(self, query: torch.Tensor, length: int) -> torch.Tensor:
        """Biases (B, H, Q, T) of queries (B, Q, D), the last Q of ``length`` steps."""
        queries = query.shape[1]
        width_logit, shift_logit = self.predict(query).transpose(1, 2).chunk(2, dim=1)  # (B,H,T)
        width = (MIN_WIDTH + (1.0 - MIN_WIDTH) * torch.sigmoid(width_logit)) * self.radius
        shift = 0.5 * self.radius * torch.tanh(shift_logit)
        offset = relative_positions(queries, length, query.device, length - queries)  # j - i
        distance = offset[None, None] - shift[..., None]  # (B, H, Q, T)
        return -(distance**2) / (2.0 * width[..., None] ** 2)


class CrossModalBlock(nn.Module):
    """Pre-LN cross-attention (query stream attends to context stream) + FFN, both residual.

    With ``radius`` set this is a CDP layer; with ``radius=None`` it is dense cross-attention.
    """

    def __init__(self, dim: int, num_heads: int, radius: int | None, drop_path: float) -> None:
        super().__init__()
        self.radius = radius
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attention = BiasedAttention(dim, num_heads)
        self.window = DynamicWindow(dim, num_heads, radius) if radius is not None else None
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        query: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        queries: int | None = None,
    ) -> torch.Tensor:
        """(B, T, D) query and context streams -> (B, Q, D): the last ``queries`` steps (default
        all) of the query stream, having attended to the context's T steps."""
        length = query.shape[1]
        queries = length if queries is None else queries
        query = query[:, -queries:]
        q = self.norm_query(query)
        bias = key_padding_bias(mask)  # (B, 1, 1, T)
        if self.window is not None:
            band = band_bias(length, self.radius, q.device, queries)  # (1, 1, Q, T)
            bias = bias + band + self.window(q, length)
        x = query + self.drop_path(self.attention(q, self.norm_context(context), bias))
        x = x + self.drop_path(self.ffn(self.norm_ffn(x)))
        return x * mask[:, -queries:, None]  # (B, Q, D)
