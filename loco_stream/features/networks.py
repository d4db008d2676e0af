"""The per-step feature extractors in torch (training and export; the runtime runs their ONNX).

- ``AudioEncoder``: a step's waveform (B, S) -> log-mel (B, 64, frames) -> small 2-D CNN -> (B, D).
  The log-mel front end is `log_mel.LogMel`: it exports as plain ONNX ops.
- ``VisualEncoder``: one step's frames (B, F, H, W, 3) uint8 -> the F frames and their F-1
  differences (motion) stacked as channels -> small 2-D CNN -> (B, D).

Both learn from the unimodal presence the synthetic generator knows (which classes are audible /
visible in each step) through a linear classifier that is dropped at export: the feature is the
penultimate embedding, so LoCo still has to learn what is heard *and* seen.
"""

from __future__ import annotations

import torch
from torch import nn

from .log_mel import LogMel


def conv_stack(channels: list[int]) -> nn.Sequential:
    """3x3 stride-2 conv + BatchNorm + ReLU per stage (BatchNorm folds into the conv at export)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:], strict=False):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


class AudioEncoder(nn.Module):
    """(B, samples_per_window) float waveform -> (B, dim) features (any window of 25 ms or more)."""

    def __init__(self, sample_rate: int, dim: int, width: int = 32) -> None:
        super().__init__()
        self.log_mel = LogMel(sample_rate)
        self.input_norm = nn.BatchNorm2d(1)
        self.cnn = conv_stack([1, width, 2 * width, 4 * width, 4 * width])
        self.embed = nn.Sequential(nn.Linear(4 * width, dim), nn.ReLU())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(self.log_mel(waveform)[:, None])  # (B, 1, mels, frames)
        x = self.cnn(x).mean(dim=(2, 3))  # (B, 4w)
        return self.embed(x)  # (B, dim)


class VisualEncoder(nn.Module):
    """(B, F, H, W, 3) uint8 frames -> (B, dim) features; F frames + F-1 differences as channels."""

    def __init__(self, frames_per_step: int, dim: int, width: int = 32) -> None:
        super().__init__()
        channels = 3 * (2 * frames_per_step - 1)
        self.cnn = conv_stack([channels, width, 2 * width, 4 * width, 4 * width])
        self.embed = nn.Sequential(nn.Linear(4 * width, dim), nn.ReLU())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() * (1.0 / 255.0)  # (B, F, H, W, 3)
        x = x.permute(0, 1, 4, 2, 3)  # (B, F, 3, H, W)
        motion = x[:, 1:] - x[:, :-1]  # (B, F-1, 3, H, W)
        x = torch.cat([x, 4.0 * motion], dim=1).flatten(1, 2) - 0.5  # (B, 3(2F-1), H, W)
        x = self.cnn(x)
        # max over space (where the object is), then mean of the remaining activations
        x = x.amax(dim=(2, 3))  # (B, 4w)
        return self.embed(x)  # (B, dim)


class PresenceClassifier(nn.Module):
    """Encoder + linear multi-label head: (inputs) -> logits (B, C). Training only."""

    def __init__(self, encoder: nn.Module, dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(dim, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))
