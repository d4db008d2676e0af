"""Label assignment: which points of the pyramid are positives for which events.

A point at position x (steps) of a level with stride s and regression range [lo, hi] is positive
for an event [a, b] if a <= x <= b and lo <= max(x - a, b - x) <= hi. Among the events a point is
positive for, it regresses the shortest one (per class when regression is class-aware); its class
targets are the classes of all events it is positive for that are as short as the one it regresses
(class-agnostic) or simply all of them (class-aware, where each class has its own boundaries).
"""

from __future__ import annotations

import torch

from loco_stream.config import ModelConfig
from loco_stream.model import point_grid

INF = float("inf")


class PointGrid:
    """Positions, strides and regression ranges of every point of a T-step window, all (N,)."""

    def __init__(self, config: ModelConfig, length: int | None = None) -> None:
        length = length or config.window  # T of the batches this grid labels
        self.positions, self.strides = point_grid(length, config.num_levels)
        ranges = [
            torch.tensor([low, high], dtype=torch.float32).expand(length // 2**level, 2)
            for level, (low, high) in enumerate(config.regression_ranges)
        ]
        self.ranges = torch.cat(ranges)  # (N, 2)
        self.num_classes = config.num_classes
        self.class_aware = config.class_aware_regression

    def assign(
        self, segments: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One video's events (K, 2) steps and labels (K,) ->
        class targets (N, C) in {0, 1} and regression targets (N, 2) or (N, C, 2) in strides."""
        num_points, num_classes = len(self.positions), self.num_classes
        reg_shape = (num_points, num_classes, 2) if self.class_aware else (num_points, 2)
        cls_target = torch.zeros(num_points, num_classes)
        reg_target = torch.zeros(reg_shape)
        if len(segments) == 0:
            return cls_target, reg_target
        x = self.positions[:, None]  # (N, 1)
        left = x - segments[None, :, 0]  # (N, K)
        right = segments[None, :, 1] - x
        farthest = torch.maximum(left, right)
        valid = (
            (left >= 0)
            & (right >= 0)
            & (farthest >= self.ranges[:, :1])
            & (farthest <= self.ranges[:, 1:])
        )
        lengths = torch.where(valid, (segments[:, 1] - segments[:, 0])[None, :], INF)  # (N, K)
        stride = self.strides[:, None]
        points = torch.arange(num_points)
        if self.class_aware:
            for label in labels.unique():
                of_class = torch.where(labels[None, :] == label, lengths, INF)
                shortest, event = of_class.min(dim=1)  # (N,)
                positive = torch.isfinite(shortest)
                cls_target[positive, label] = 1.0
                offsets = torch.stack([left[points, event], right[points, event]], dim=1) / stride
                reg_target[positive, label] = offsets[positive]
            return cls_target, reg_target
        shortest, event = lengths.min(dim=1)  # (N,)
        ties = valid & (lengths <= shortest[:, None] + 1e-3)  # (N, K)
        cls_target.index_put_(
            (points[:, None].expand_as(ties)[ties], labels[None, :].expand_as(ties)[ties]),
            torch.tensor(1.0),
        )
        offsets = torch.stack([left[points, event], right[points, event]], dim=1) / stride
        positive = torch.isfinite(shortest)
        reg_target[positive] = offsets[positive]
        return cls_target, reg_target
