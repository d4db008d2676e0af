"""Log-mel front ends as plain convolutions and matrix products, so they export as ONNX ops.

The STFT is a Conv1d whose kernels are the windowed DFT basis (cos and -sin rows); a frame of
``window_length`` samples zero-padded to ``n_fft`` is the same as kernels of ``window_length``
taps at the ``n_fft`` bins' frequencies.

- `LogMel`: the trainable log-mel CNN's input: 25-ms windows, 10-ms hop, power spectrum, 64 HTK
  mel bands 50-7600 Hz (slopes in Hz), ``log(mel + 1e-6)``.
- `VGGishLogMel`: VGGish's input exactly as the official code computes it: 25-ms periodic Hann
  windows zero-padded to 512, 10-ms hop, magnitude spectrum, 64 HTK mel bands 125-7500 Hz with
  slopes in mel and the DC bin dropped, ``log(mel + 0.01)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_MELS = 64
MEL_RANGE = (50.0, 7600.0)  # Hz, the trainable CNN's
VGGISH_FFT = 512  # the next power of two above the window
VGGISH_MEL_RANGE = (125.0, 7500.0)
VGGISH_LOG_OFFSET = 0.01


def dft_kernels(window_length: int, n_fft: int) -> torch.Tensor:
    """(2K, 1, window_length) periodic-Hann-windowed DFT basis, K = n_fft // 2 + 1: cos rows,
    then -sin rows (real and imaginary parts of the spectrum)."""
    window = torch.hann_window(window_length, periodic=True, dtype=torch.float64)
    frequencies = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    phase = 2 * math.pi * frequencies * torch.arange(window_length, dtype=torch.float64) / n_fft
    kernels = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window
    return kernels.float()[:, None, :]


def spectrum(waveform: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) -> real and imaginary parts (B, K, frames), frames = (S - window) // HOP + 1."""
    parts = nn.functional.conv1d(waveform[:, None, :], kernels, stride=HOP)  # (B, 2K, F)
    return parts.chunk(2, dim=1)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, slopes in Hz."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def vggish_mel_matrix(sample_rate: int = 16000) -> np.ndarray:
    """(N_MELS, VGGISH_FFT // 2 + 1) VGGish's mel weights: slopes in mel, DC bin zeroed."""

    def to_mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    bins_mel = to_mel(np.linspace(0.0, sample_rate / 2, VGGISH_FFT // 2 + 1))
    edges = np.linspace(*to_mel(VGGISH_MEL_RANGE), N_MELS + 2)
    rising = (bins_mel[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins_mel[None, :]) / (edges[2:, None] - edges[1:-1, None])
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[:, 0] = 0.0
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """(B, S) waveform -> (B, N_MELS, frames) log-mel power, frames = (S - WINDOW) // HOP + 1."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.register_buffer("dft", dft_kernels(WINDOW, WINDOW))  # (2K, 1, WINDOW)
        self.register_buffer(
            "mel", torch.from_numpy(mel_filterbank(sample_rate, WINDOW, N_MELS, *MEL_RANGE))
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        real, imaginary = spectrum(waveform, self.dft)
        return torch.log(self.mel @ (real**2 + imaginary**2) + 1e-6)  # (B, N_MELS, F)


class VGGishLogMel(nn.Module):
    """(B, S) 16-kHz waveform -> (B, frames, N_MELS) VGGish log-mel magnitudes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dft", dft_kernels(WINDOW, VGGISH_FFT))  # (2K, 1, WINDOW)
        self.register_buffer("mel", torch.from_numpy(vggish_mel_matrix()))  # (N_MELS, K)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        real, imaginary = spectrum(waveform, self.dft)
        magnitude = torch.sqrt(real**2 + imaginary**2)  # (B, K, F)
        return torch.log(self.mel @ magnitude + VGGISH_LOG_OFFSET).transpose(1, 2)
