"""Per-dimension feature standardisation, measured on the training split and kept in the model.

Pretrained embeddings come on scales of their own: EfficientNet-Lite0's pooled 1280-d ReLU6
outputs share a large positive mean, the log-mel CNN's 128-d features are centred near zero.
``(x - mean) / scale`` per dimension puts both on one footing before the first projection. The
statistics live in the model config (``model.feature_stats``), so the checkpoint, the exported
graph (two constant-folded nodes at its input) and the model directory's card carry the same
numbers: training, ``loco-detect`` and the stream see identical inputs. See docs/training.md.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_SCALE = 1e-6  # a dimension whose std is below this is constant: divided by 1, not by ~0


class Standardiser(nn.Module):
    """(B, T, C) features, (B, T) mask -> (B, T, C) standardised, 0 at padded steps."""

    def __init__(self, mean: list[float], scale: list[float]) -> None:
        super().__init__()
        # Not persistent: the numbers come from the config, so older checkpoints still load.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale * mask[..., None]


def standardiser(stats: dict, modality: str) -> Standardiser | None:
    """The modality's standardiser from ``model.feature_stats`` (None when it holds none)."""
    entry = stats.get(modality)
    if not entry:
        return None
    return Standardiser(entry["mean"], entry["scale"])
