"""Contracts of the LoCo network: padding invariance, locality of LCC and CDP, every variant."""

from __future__ import annotations

import pytest
import torch

from loco_stream.config import VARIANTS, ModelConfig
from loco_stream.model import LoCo, WindowGraph, locality_loss
from loco_stream.model.cdp import CrossModalBlock
from loco_stream.model.lcc import LocalityCorrespondenceCorrection
from tests.tiny_model import tiny_model_config

torch.set_num_threads(2)


def small_config(**overrides) -> ModelConfig:
    return tiny_model_config(**{"visual_dim": 12, "audio_dim": 6, **overrides})


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_forward_and_backward(variant):
    model = LoCo(small_config(variant=variant)).train()
    visual, audio, mask = torch.randn(2, 32, 12), torch.randn(2, 32, 6), torch.ones(2, 32)
    out = model(visual, audio, mask)
    assert out.cls_logits.shape == (2, 32 + 16 + 8, 3)
    assert out.offsets.shape == (2, 56, 2)
    assert (out.similarity is not None) == (variant in ("loco", "no_cdp"))
    loss = out.cls_logits.sum() + out.offsets.sum()
    if out.similarity is not None:
        loss = loss + locality_loss(out.similarity, mask, 2, 6)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("variant", ["loco", "baseline", "audio_only"])
def test_padding_never_changes_valid_outputs(variant):
    torch.manual_seed(0)
    model = LoCo(small_config(variant=variant, window=64)).eval()
    visual, audio = torch.randn(1, 32, 12), torch.randn(1, 32, 6)
    with torch.no_grad():
        short = WindowGraph(LoCo(small_config(variant=variant, window=32)))
        short.model.load_state_dict(model.state_dict())
        scores_short, segments_short = short.eval()(visual, audio, torch.ones(1, 32))
        # the same 32 steps followed by 32 steps of garbage marked as padding
        padded_visual = torch.cat([visual, 100 * torch.randn(1, 32, 12)], dim=1)
        padded_audio = torch.cat([audio, 100 * torch.randn(1, 32, 6)], dim=1)
        mask = torch.cat([torch.ones(1, 32), torch.zeros(1, 32)], dim=1)
        scores_long, segments_long = WindowGraph(model).eval()(padded_visual, padded_audio, mask)
    # points of level l sit at 0, 2^l, ...: compare the points of the valid prefix, level by level
    for level, (begin_short, begin_long) in enumerate([(0, 0), (32, 64), (48, 96)]):
        count = 32 // 2**level
        torch.testing.assert_close(
            scores_long[0, begin_long : begin_long + count],
            scores_short[0, begin_short : begin_short + count],
            atol=1e-5,
            rtol=1e-4,
        )
        torch.testing.assert_close(
            segments_long[0, begin_long : begin_long + count],
            segments_short[0, begin_short : begin_short + count],
            atol=1e-4,
            rtol=1e-4,
        )
    # and padded points score exactly zero
    assert scores_long[0, 32:64].abs().max() == 0


def changed_outputs(function, inputs: torch.Tensor, step: int) -> torch.Tensor:
    """Indices of output steps that change when input ``step`` is perturbed (measured)."""
    with torch.no_grad():
        before = function(inputs)
        perturbed = inputs.clone()
        perturbed[:, step] += 5.0 * torch.randn_like(perturbed[:, step])
        after = function(perturbed)
    return torch.nonzero((after - before).abs().amax(dim=-1)[0] > 1e-6).flatten()


def test_lcc_correction_is_local():
    torch.manual_seed(1)
    radius = 2
    lcc = LocalityCorrespondenceCorrection(dim=8, shared_dim=4, radius=radius, temperature=0.1)
    audio, visual, mask = torch.randn(1, 40, 8), torch.randn(1, 40, 8), torch.ones(1, 40)
    for step in (5, 20, 39):
        # corrected audio as a function of the visual input: only |i - step| <= radius may move
        reach = changed_outputs(lambda v: lcc(audio, v, mask)[0], visual, step)
        expected = torch.arange(max(0, step - radius), min(40, step + radius + 1))
        assert torch.equal(reach, expected)


def test_cdp_attention_is_local_and_dense_attention_is_not():
    torch.manual_seed(2)
    radius = 3
    cdp = CrossModalBlock(dim=8, num_heads=2, radius=radius, drop_path=0.0).eval()
    dense = CrossModalBlock(dim=8, num_heads=2, radius=None, drop_path=0.0).eval()
    query, context, mask = torch.randn(1, 40, 8), torch.randn(1, 40, 8), torch.ones(1, 40)
    reach = changed_outputs(lambda c: cdp(query, c, mask), context, 20)
    assert torch.equal(reach, torch.arange(20 - radius, 20 + radius + 1))
    assert len(changed_outputs(lambda c: dense(query, c, mask), context, 20)) == 40


def test_cdp_predicted_width_changes_attention():
    """The dynamic window is data-driven: different queries get different Gaussian widths."""
    torch.manual_seed(3)
    block = CrossModalBlock(dim=8, num_heads=2, radius=4, drop_path=0.0)
    torch.nn.init.normal_(block.window.predict.weight, std=1.0)
    bias = block.window(torch.randn(1, 10, 8), 10)  # (1, H, T, T)
    neighbour = bias[0, :, torch.arange(1, 9), torch.arange(2, 10)]  # logits one step ahead
    assert neighbour.std() > 0.01


def test_locality_loss_prefers_aligned_modalities():
    torch.manual_seed(4)
    mask = torch.ones(1, 30)
    aligned = torch.eye(30)[None] * 10.0  # S_ij high only on the diagonal
    shuffled = aligned[:, torch.randperm(30)]
    assert locality_loss(aligned, mask, 1, 4) < locality_loss(shuffled, mask, 1, 4)
    # padding is masked out: garbage similarities at padded steps change nothing
    padded = torch.full((1, 40, 40), 50.0)
    padded[:, :30, :30] = aligned[0]
    mask_padded = torch.cat([mask, torch.zeros(1, 10)], dim=1)
    torch.testing.assert_close(
        locality_loss(padded, mask_padded, 1, 4), locality_loss(aligned, mask, 1, 4)
    )
