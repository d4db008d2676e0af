"""The per-step feature extractors in torch (training and export; the runtime runs their ONNX).

- ``AudioEncoder``: a step's waveform (B, S) -> log-mel (B, 64, frames) -> small 2-D CNN -> (B, D).
  The STFT is a Conv1d with fixed DFT kernels, so the whole graph exports as plain ONNX ops.
- ``VisualEncoder``: one step's frames (B, F, H, W, 3) uint8 -> the F frames and their F-1
  differences (motion) stacked as channels -> small 2-D CNN -> (B, D).

Both learn from the unimodal presence the synthetic generator knows (which classes are audible /
visible in each step) through a linear classifier that is dropped at export: the feature is the
penultimate embedding, so LoCo still has to learn what is heard *and* seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_MELS = 64
MEL_RANGE = (50.0, 7600.0)  # Hz


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


class LogMel(nn.Module):
    """(B, S) waveform -> (B, N_MELS, frames) log-mel power, frames = (S - N_FFT) // HOP + 1."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        window = torch.hann_window(N_FFT, periodic=True)
        frequencies = torch.arange(N_FFT // 2 + 1, dtype=torch.float32)[:, None]
        phase = 2 * math.pi * frequencies * torch.arange(N_FFT, dtype=torch.float32)[None] / N_FFT
        kernels = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window  # (2K, N_FFT)
        self.register_buffer("dft", kernels[:, None, :])  # (2K, 1, N_FFT)
        self.register_buffer(
            "mel", torch.from_numpy(mel_filterbank(sample_rate, N_FFT, N_MELS, *MEL_RANGE))
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = nn.functional.conv1d(waveform[:, None, :], self.dft, stride=HOP)  # (B, 2K, F)
        real, imaginary = spectrum.chunk(2, dim=1)
        power = real**2 + imaginary**2  # (B, K, F)
        return torch.log(self.mel @ power + 1e-6)  # (B, N_MELS, F)


def conv_stack(channels: list[int]) -> nn.Sequential:
    """3x3 stride-2 conv + BatchNorm + ReLU per stage (BatchNorm folds into the conv at export)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:], strict=False):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


class AudioEncoder(nn.Module):
    """(B, samples_per_step) float waveform -> (B, dim) features."""

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
