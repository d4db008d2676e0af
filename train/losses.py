"""Losses: sigmoid focal (classification), 1-D DIoU (regression), and their normaliser."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Summed focal loss (Lin et al.) of (M, C) logits against {0, 1} targets."""
    probability = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * cross_entropy * (1 - p_t) ** gamma).sum()


def diou_loss_1d(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed 1-D distance-IoU loss of (M, 2) distances to start/end from the same points."""
    pred_left, pred_right = predicted[:, 0], predicted[:, 1]
    target_left, target_right = target[:, 0], target[:, 1]
    intersection = torch.minimum(pred_left, target_left) + torch.minimum(pred_right, target_right)
    union = pred_left + pred_right + target_left + target_right - intersection
    iou = intersection / union.clamp(min=1e-8)
    enclosing = torch.maximum(pred_left, target_left) + torch.maximum(pred_right, target_right)
    centre_gap = (pred_right - pred_left) - (target_right - target_left)  # twice the centre shift
    return (1.0 - iou + (0.5 * centre_gap) ** 2 / enclosing.clamp(min=1e-8) ** 2).sum()


class PositiveCountEMA:
    """Normaliser of the detection losses: an EMA of the number of positive points per batch."""

    def __init__(self, initial: float, momentum: float) -> None:
        self.value = initial
        self.momentum = momentum

    def update(self, positives: float) -> float:
        self.value = self.momentum * self.value + (1 - self.momentum) * max(positives, 1.0)
        return self.value
