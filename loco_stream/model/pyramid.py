"""Cross-modal feature pyramid: L levels at strides 1, 2, 4, ..., audio and visual kept apart.

At each level every stream attends to the other (one ``CrossModalBlock`` per direction, both reading
the streams as they were before the level). Between levels each stream is downsampled by a masked,
strided depthwise convolution. With a single modality the stream attends to itself.
"""

from __future__ import annotations

import torch
from torch import nn

from .cdp import CrossModalBlock


class Downsample(nn.Module):
    """Stride-2 masked depthwise Conv1d + LayerNorm: (B, T, D) -> (B, T/2, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask[..., None]
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T/2, D)
        mask = mask[:, ::2]  # (B, T/2): a point is valid where its centre step is
        return self.norm(x) * mask[..., None], mask


class CrossModalPyramid(nn.Module):
    """Streams ``[(B, T, D), ...]`` (one or two) -> per level ``(B, T/2^l, D * streams)``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_levels: int,
        num_streams: int,
        radius: int | None,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.num_streams = num_streams
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                CrossModalBlock(dim, num_heads, radius, drop_path) for _ in range(num_streams)
            )
            for _ in range(num_levels)
        )
        self.downsamples = nn.ModuleList(
            nn.ModuleList(Downsample(dim) for _ in range(num_streams))
            for _ in range(num_levels - 1)
        )

    def forward(
        self, streams: list[torch.Tensor], mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns per-level fused features (B, T_l, D*S) and per-level masks (B, T_l)."""
        features, masks = [], []
        for level, blocks in enumerate(self.blocks):
            if level > 0:
                pairs = [
                    down(x, mask)
                    for down, x in zip(self.downsamples[level - 1], streams, strict=True)
                ]
                streams = [x for x, _ in pairs]
                mask = pairs[0][1]
            # stream k attends to the other stream (to itself when there is only one)
            contexts = streams[::-1]
            streams = [
                block(x, context, mask)
                for block, x, context in zip(blocks, streams, contexts, strict=True)
            ]
            features.append(torch.cat(streams, dim=-1))
            masks.append(mask)
        return features, masks
