"""Classification and regression heads, shared across pyramid levels (ActionFormer style)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import MaskedConv1d

CLASS_PRIOR = 0.01  # initial foreground probability of the classifier


class ConvTower(nn.Module):
    """(num_layers - 1) x (masked Conv1d k=3, LayerNorm, ReLU) then a masked Conv1d k=3 output."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [dim] * (num_layers - 1)
        self.convs = nn.ModuleList(
            MaskedConv1d(dims[i], dims[i + 1]) for i in range(num_layers - 1)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers - 1))
        self.output = MaskedConv1d(dims[-1], out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x, mask)))
        return self.output(x, mask)  # (B, T, out_dim)


class ClassificationHead(nn.Module):
    """Per-level features (B, T_l, D_in) -> class logits (B, T_l, C); sigmoid, multi-label."""

    def __init__(self, in_dim: int, dim: int, num_classes: int, num_layers: int) -> None:
        super().__init__()
        self.tower = ConvTower(in_dim, dim, num_classes, num_layers)
        nn.init.constant_(self.tower.output.conv.bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))

    def forward(
        self, features: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        return [self.tower(x, mask) for x, mask in zip(features, masks, strict=True)]


class RegressionHead(nn.Module):
    """Per-level features -> distances to start and end in units of the level's stride, >= 0.

    Output (B, T_l, 2), or (B, T_l, C, 2) when class-aware. ``ReLU(scale_l * x)`` with one
    learnable scale per level.
    """

    def __init__(
        self, in_dim: int, dim: int, num_levels: int, num_layers: int, num_classes: int | None
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        out_dim = 2 * (num_classes or 1)
        self.tower = ConvTower(in_dim, dim, out_dim, num_layers)
        self.scales = nn.Parameter(torch.ones(num_levels))

    def forward(
        self, features: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        outputs = []
        for level, (x, mask) in enumerate(zip(features, masks, strict=True)):
            offsets = torch.relu(self.scales[level] * self.tower(x, mask))  # (B, T_l, 2 * K)
            if self.num_classes:
                offsets = offsets.view(offsets.shape[0], offsets.shape[1], self.num_classes, 2)
            outputs.append(offsets)
        return outputs
