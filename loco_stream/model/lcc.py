"""LCC: Locality-aware Correspondence Correction.

After the unimodal encoders, each modality gathers the *other* modality from its local temporal
neighbourhood, weighted by cross-modal similarity, and is modulated by what it gathered:

    S_ij  = <a_i, v_j> / tau                     (a, v l2-normalised in a shared space)
    c^a_i = sum_{|i-j| <= w} softmax_j(S_ij) W_v v_j
    a'_i  = a_i + sigmoid(g_a([a_i, c^a_i])) * c^a_i      (and symmetrically for v)

What both modalities show at nearby times is reinforced; what only one carries is not. The
similarity also gets free supervision (``locality_loss``): cross-modal pairs closer than
``w_pos`` steps are positives, pairs at least ``gap`` steps apart in the same clip are negatives
(multi-positive InfoNCE, both directions, padding masked out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MASKED, band_bias, key_padding_bias, masked_softmax, relative_positions


class LocalityCorrespondenceCorrection(nn.Module):
    """Cross-modal local correction of audio and visual embeddings, ``(B, T, D)`` each."""

    def __init__(self, dim: int, shared_dim: int, radius: int, temperature: float) -> None:
        super().__init__()
        self.radius = radius
        self.temperature = temperature
        self.audio_key = nn.Linear(dim, shared_dim)
        self.visual_key = nn.Linear(dim, shared_dim)
        self.audio_value = nn.Linear(dim, dim)
        self.visual_value = nn.Linear(dim, dim)
        self.audio_gate = nn.Linear(2 * dim, dim)
        self.visual_gate = nn.Linear(2 * dim, dim)

    def similarity(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """(B, T, T) scaled cosine similarity ``S[b, i, j]`` of audio step i and visual step j."""
        a = F.normalize(self.audio_key(audio), dim=-1)
        v = F.normalize(self.visual_key(visual), dim=-1)
        return a @ v.transpose(1, 2) / self.temperature

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns corrected audio, corrected visual (both (B, T, D)) and S (B, T, T)."""
        sim = self.similarity(audio, visual)  # (B, T, T)
        band = band_bias(sim.shape[1], self.radius, sim.device)[0]  # (1, T, T)
        padding = key_padding_bias(mask)[:, 0]  # (B, 1, T)
        audio_weights = masked_softmax(sim + band + padding)  # over visual steps j
        visual_weights = masked_softmax(sim.transpose(1, 2) + band + padding)  # over i
        audio_context = audio_weights @ self.visual_value(visual)  # (B, T, D)
        visual_context = visual_weights @ self.audio_value(audio)  # (B, T, D)
        audio_gate = torch.sigmoid(self.audio_gate(torch.cat([audio, audio_context], dim=-1)))
        visual_gate = torch.sigmoid(self.visual_gate(torch.cat([visual, visual_context], dim=-1)))
        valid = mask[..., None]
        audio = (audio + audio_gate * audio_context) * valid
        visual = (visual + visual_gate * visual_context) * valid
        return audio, visual, sim


def locality_loss(
    sim: torch.Tensor, mask: torch.Tensor, positive_radius: int, negative_gap: int
) -> torch.Tensor:
    """Multi-positive InfoNCE over a (B, T, T) cross-modal similarity, both directions.

    For each valid anchor step i: positives are valid j with ``|i-j| <= positive_radius``,
    negatives valid j with ``|i-j| >= negative_gap``; pairs in between are ignored. Anchors with no
    negative (very short clips) do not contribute. Returns a scalar.
    """
    distance = relative_positions(sim.shape[1], sim.shape[2], sim.device).abs()[None]  # (1, T, T)
    pair_valid = mask[:, :, None] * mask[:, None, :]  # (B, T, T)
    positive = (distance <= positive_radius).float() * pair_valid
    negative = (distance >= negative_gap).float() * pair_valid
    losses = []
    for logits in (sim, sim.transpose(1, 2)):  # audio->visual, visual->audio
        positive_term = torch.logsumexp(logits + (1.0 - positive) * MASKED, dim=-1)
        all_term = torch.logsumexp(
            logits + (1.0 - torch.clamp(positive + negative, max=1.0)) * MASKED, dim=-1
        )
        anchor = mask * (negative.sum(-1) > 0).float()  # (B, T)
        losses.append(((all_term - positive_term) * anchor).sum() / anchor.sum().clamp(min=1.0))
    return 0.5 * (losses[0] + losses[1])
