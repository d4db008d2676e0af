"""LoCo: unimodal encoders -> LCC -> cross-modal CDP pyramid -> shared heads.

Variants (``ModelConfig.variant``) switch parts on and off in this one code path:

    loco         LCC + CDP                  no_lcc      CDP only
    no_cdp       LCC + dense cross-attn     baseline    dense cross-attn (UnAV-style)
    audio_only   audio stream + CDP         visual_only visual stream + CDP

Points: level ``l`` (stride ``2^l``) has a point at every ``2^l``-th step; all levels are
concatenated, so a window of T steps has ``N = sum_l T / 2^l`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import postprocess
from ..config import ModelConfig
from .encoder import UnimodalEncoder
from .heads import ClassificationHead, RegressionHead
from .lcc import LocalityCorrespondenceCorrection
from .pyramid import CrossModalPyramid
from .standardise import standardiser


def point_grid(length: int, num_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (in steps) and strides of every point of a T-step window, both (N,)
    (`loco_stream.postprocess.point_grid` as tensors)."""
    positions, strides = postprocess.point_grid(length, num_levels)
    return torch.from_numpy(positions), torch.from_numpy(strides)


@dataclass
class LoCoOutput:
    cls_logits: torch.Tensor  # (B, N, C)
    offsets: torch.Tensor  # (B, N, 2) or (B, N, C, 2): distances to start/end, units of stride
    point_mask: torch.Tensor  # (B, N), 1 at valid points
    similarity: torch.Tensor | None  # (B, T, T) LCC audio-visual similarity, None without LCC


class LoCo(nn.Module):
    """The LoCo network. ``forward(visual (B,T,Dv), audio (B,T,Da), mask (B,T)) -> LoCoOutput``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config

        def encoder(in_dim: int) -> UnimodalEncoder:
            return UnimodalEncoder(
                in_dim,
                c.embed_dim,
                c.num_heads,
                c.num_proj_layers,
                c.num_encoder_blocks,
                c.encoder_radius,
                c.drop_path,
                c.position_encoding == "sinusoidal",
            )

        self.visual_standardiser = standardiser(c.feature_stats, "visual")
        self.audio_standardiser = standardiser(c.feature_stats, "audio")
        self.feature_dropout = nn.Dropout(c.feature_dropout)
        self.audio_encoder = encoder(c.audio_dim) if c.uses_audio else None
        self.visual_encoder = encoder(c.visual_dim) if c.uses_visual else None
        self.lcc = (
            LocalityCorrespondenceCorrection(
                c.embed_dim, c.lcc_dim, c.lcc_radius, c.lcc_temperature
            )
            if c.uses_lcc
            else None
        )
        num_streams = int(c.uses_audio) + int(c.uses_visual)
        self.pyramid = CrossModalPyramid(
            c.embed_dim,
            c.num_heads,
            c.num_levels,
            num_streams,
            c.cdp_radius if c.uses_cdp else None,
            c.drop_path,
        )
        head_in = c.embed_dim * num_streams
        self.classifier = ClassificationHead(head_in, c.head_dim, c.num_classes, c.num_head_layers)
        self.regressor = RegressionHead(
            head_in,
            c.head_dim,
            c.num_levels,
            c.num_head_layers,
            c.num_classes if c.class_aware_regression else None,
        )

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> LoCoOutput:
        if self.visual_standardiser is not None:
            visual = self.visual_standardiser(visual, mask)  # (B, T, Dv)
        if self.audio_standardiser is not None:
            audio = self.audio_standardiser(audio, mask)  # (B, T, Da)
        visual, audio = self.feature_dropout(visual), self.feature_dropout(audio)
        streams = []
        if self.audio_encoder is not None:
            streams.append(self.audio_encoder(audio, mask))  # (B, T, D)
        if self.visual_encoder is not None:
            streams.append(self.visual_encoder(visual, mask))  # (B, T, D)
        similarity = None
        if self.lcc is not None:
            audio_x, visual_x, similarity = self.lcc(streams[0], streams[1], mask)
            streams = [audio_x, visual_x]
        features, masks = self.pyramid(streams, mask)
        return LoCoOutput(
            cls_logits=torch.cat(self.classifier(features, masks), dim=1),
            offsets=torch.cat(self.regressor(features, masks), dim=1),
            point_mask=torch.cat(masks, dim=1),
            similarity=similarity,
        )


class WindowGraph(nn.Module):
    """What is exported and served: (visual, audio, mask) -> (scores, segments).

    ``scores`` (B, N, C) are sigmoid probabilities, 0 at padded points; ``segments`` (B, N, 2) or
    (B, N, C, 2) are [start, end] in steps of the window (step i is centred at i). Decoding,
    soft-NMS and stitching happen on the host.
    """

    def __init__(self, model: LoCo) -> None:
        super().__init__()
        self.model = model
        positions, strides = point_grid(model.config.window, model.config.num_levels)
        self.register_buffer("positions", positions, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def forward(
        self, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(visual, audio, mask)
        scores = torch.sigmoid(out.cls_logits) * out.point_mask[..., None]  # (B, N, C)
        offsets = out.offsets
        shape = (1, -1) + (1,) * (offsets.dim() - 3)  # broadcast over the class axis if any
        position = self.positions.view(shape)
        stride = self.strides.view(shape)
        start = position - offsets[..., 0] * stride
        end = position + offsets[..., 1] * stride
        return scores, torch.stack([start, end], dim=-1)
