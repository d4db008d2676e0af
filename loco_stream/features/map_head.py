"""A small head trained on EfficientNet-Lite0's frozen stage-5 map: the pretrained visual extractor.

The pooled 1280-d ImageNet embedding of a whole frame loses what tells a user's classes apart
(docs/training.md, "Where EfficientNet's visual side loses the classes"); the map of stage 5
(blocks 0-10, 112 x 14 x 14 at 224 x 224) still holds it, in a form a small trained head reads:

- ``Stage5Trunk``: EfficientNet-Lite0 up to the end of stage 5, ImageNet weights, frozen
  (700 k parameters of the network's 4.7 M: the later stages are not shipped);
- ``MapHead``: 1x1 and 3x3 convolutions of 128 channels, a max pool over the map's places (where
  the object is), the mean over a step's frames, a 128-d embedding; trained by ``loco-train``'s
  extractor stage (``train/map_head.py``) on which classes each step shows;
- ``VisualMapHead``: both, the per-step visual extractor: (B, F, H, W, 3) uint8 -> (B, 128).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from .efficientnet_lite import EfficientNetLite0, normalise

STAGE5_BLOCKS = 11  # blocks 0-10: stages 1-5
MAP_CHANNELS = 112  # stage 5's output channels
HEAD_DIM = 128


class Stage5Trunk(nn.Module):
    """(N, 3, H, W) normalised images -> (N, 112, H/16, W/16): EfficientNet-Lite0 to stage 5."""

    def __init__(self, network: EfficientNetLite0) -> None:
        super().__init__()
        self._conv_stem = network._conv_stem
        self._bn0 = network._bn0
        self._blocks = nn.ModuleList(network._blocks[:STAGE5_BLOCKS])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = functional.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        return x


class MapHead(nn.Module):
    """(B, F, 112, h, w) stage-5 maps of a step's F frames (any float type) -> (B, dim)."""

    def __init__(self, dim: int = HEAD_DIM) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(MAP_CHANNELS, dim, 1),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
        )
        self.embed = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        batch, count = maps.shape[:2]
        places = self.body(maps.flatten(0, 1).float())  # (B*F, dim, h, w)
        pooled = places.amax(dim=(2, 3)).view(batch, count, -1).mean(dim=1)  # (B, dim)
        return self.embed(pooled)


class VisualMapHead(nn.Module):
    """(B, F, H, W, 3) uint8 frames of a step -> (B, dim): the frozen trunk, then the head."""

    def __init__(self, trunk: Stage5Trunk, head: MapHead) -> None:
        super().__init__()
        self.trunk = trunk.eval().requires_grad_(False)
        self.head = head

    def train(self, mode: bool = True) -> VisualMapHead:
        super().train(mode)
        self.trunk.eval()  # frozen: its BatchNorm statistics stay ImageNet's
        return self

    def maps(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W, 3) uint8 -> (B, F, 112, h, w): what the head learns from (cached)."""
        batch, count = frames.shape[:2]
        mapped = self.trunk(normalise(frames.flatten(0, 1)))
        return mapped.view(batch, count, *mapped.shape[1:])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.maps(frames))


def untrained_visual_map_head(
    network: EfficientNetLite0 | None = None, dim: int = HEAD_DIM
) -> VisualMapHead:
    """A ``VisualMapHead`` on ``network``'s stage 5 (default: random weights, to load into)."""
    return VisualMapHead(Stage5Trunk(network or EfficientNetLite0()), MapHead(dim))
