"""Small building blocks shared by the LoCo modules.

Features are channel-last, ``(B, T, D)``, everywhere except inside convolutions. Masks are float
``(B, T)`` with 1 at valid steps. Attention masks are *additive float biases* (0 or -1e4): a finite
value keeps every softmax row defined (no NaN for padded queries), exports as plain arithmetic, and
still gives exactly 0 weight to masked keys in fp32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MASKED = -1.0e4  # additive bias of a masked attention logit (finite: fp16-safe, no NaN rows)
EXP_FLOOR = -80.0  # shifted logits are raised to this: every exp stays in the normal fp32 range


def masked_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of logits that carry additive ``MASKED`` biases.

    ONNX Runtime's CPU softmax is 15-30x slower on rows where exp underflows (logits ~87 below the
    row's max), which band and padding masks make the majority. Raising the shifted logits to -80
    keeps each exp in range; a raised entry then weighs < 2e-35 instead of 0, which changes no
    fp32 output. The max is detached: softmax is shift-invariant.
    """
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()
    return torch.softmax(shifted.clamp(min=EXP_FLOOR), dim=-1)


def key_padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, Tk) validity mask -> (B, 1, 1, Tk) additive bias."""
    return ((1.0 - mask) * MASKED)[:, None, None, :]


def relative_positions(
    length_q: int, length_k: int, device: torch.device, query_start: int = 0
) -> torch.Tensor:
    """(Tq, Tk) matrix of ``j - i`` (key index minus query index), as float; query ``q`` sits at
    key index ``query_start + q``."""
    query = torch.arange(query_start, query_start + length_q, device=device, dtype=torch.float32)
    key = torch.arange(length_k, device=device, dtype=torch.float32)
    return key[None, :] - query[:, None]


def band_bias(
    length: int, radius: int, device: torch.device, queries: int | None = None
) -> torch.Tensor:
    """(1, 1, Q, T) additive bias that keeps only keys with ``|j - i| <= radius``; the queries
    are the last ``queries`` (default: all T) of the T steps."""
    queries = length if queries is None else queries
    outside = relative_positions(queries, length, device, length - queries).abs() > radius
    return (outside.float() * MASKED)[None, None]


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) fixed sinusoidal position encoding (Vaswani et al.), sin/cos interleaved.

    Computed for the length at hand (in the exported graph: a small constant of the window's size).
    """
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    exponent = torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (
        -math.log(10000.0) / dim
    )
    angle = position * torch.exp(exponent)  # (length, dim / 2)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(length, dim)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * torch.bernoulli(torch.full(shape, keep, device=x.device)) / keep


class MaskedConv1d(nn.Module):
    """Conv1d over ``(B, T, C)`` that zeroes padded steps before and after the convolution.

    Zeroing before the convolution makes a valid step next to padding see exactly what it sees at
    the end of an unpadded sequence (zero padding), so padding never changes valid outputs.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, groups=groups)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask[..., None]  # (B, T, C)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C_out)
        return x * mask[..., None]


class FeedForward(nn.Module):
    """Position-wise MLP, 4x expansion with GELU."""

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * expansion), nn.GELU(), nn.Linear(dim * expansion, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BiasedAttention(nn.Module):
    """Multi-head attention whose logits take an additive bias ``(B|1, H|1, Tq, Tk)``.

    Written with plain matmuls (no ``nn.MultiheadAttention``) so the exported graph keeps static
    shapes and every mask stays a float addition.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, D/H)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        batch, length, dim = query.shape
        q = self.split_heads(self.query(query)) * self.head_dim**-0.5  # (B, H, Tq, Dh)
        k = self.split_heads(self.key(context))  # (B, H, Tk, Dh)
        v = self.split_heads(self.value(context))  # (B, H, Tk, Dh)
        weights = masked_softmax(q @ k.transpose(-1, -2) + bias)  # (B, H, Tq, Tk)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)  # (B, Tq, D)
        return self.out(attended)
