"""The step graph computes, call by call, exactly what one run of the network over the whole clip
computes: for every point, its value after the clip's last step equals the whole-clip run's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_model import tiny_model_config

from loco_stream.bundle import STEP_GRAPH, read_card
from loco_stream.config import ModelConfig, load_config
from loco_stream.model import LoCo
from loco_stream.model.streaming import StepGraph
from loco_stream.model_dir import ModelDir
from loco_stream.offline import detect_features, detect_steps
from loco_stream.runtime.torch_backend import TorchBackend
from loco_stream.step_plan import NotStreamable, newest_points, plan_steps, step_flags
from loco_stream.stream.step_runner import StepRunner

TOLERANCE = 1e-4


def whole_clip(model: LoCo, visual: torch.Tensor, audio: torch.Tensor) -> dict:
    """Scores and distances (in steps) of every valid point of one run over the whole clip,
    keyed by (level, point)."""
    steps = visual.shape[1]
    length = -(-steps // model.config.max_stride) * model.config.max_stride
    mask = torch.zeros(1, length)
    mask[:, :steps] = 1.0
    pad = (0, 0, 0, length - steps)
    with torch.inference_mode():
        out = model(torch.nn.functional.pad(visual, pad), torch.nn.functional.pad(audio, pad), mask)
    scores = torch.sigmoid(out.cls_logits)[0]
    points, row = {}, 0
    for level in range(model.config.num_levels):
        stride = 2**level
        for point in range(length // stride):
            if out.point_mask[0, row].item() > 0:
                points[(level, point)] = (scores[row], out.offsets[0, row] * stride)
            row += 1
    return points


def step_by_step(graph: StepGraph, visual: torch.Tensor, audio: torch.Tensor) -> dict:
    """The last value the step graph gave every point, calling it ``hop`` steps at a time."""
    plan, steps = graph.plan, visual.shape[1]
    state, points, end = graph.initial_state(), {}, 0
    while end < steps:
        end += plan.hop
        new_visual = torch.zeros(1, plan.hop, visual.shape[2])
        new_audio = torch.zeros(1, plan.hop, audio.shape[2])
        valid = torch.zeros(1, plan.hop)
        count = min(plan.hop, steps - (end - plan.hop))
        new_visual[:, :count] = visual[:, end - plan.hop : end - plan.hop + count]
        new_audio[:, :count] = audio[:, end - plan.hop : end - plan.hop + count]
        valid[:, :count] = 1.0
        advance, odd = step_flags(plan, end)
        with torch.inference_mode():
            scores, distances, *state = graph(
                new_visual, new_audio, valid, torch.tensor(advance), torch.tensor(odd), *state
            )
        row = 0
        for index, (level, newest) in enumerate(
            zip(plan.levels, newest_points(plan, end), strict=True)
        ):
            for offset in range(level.head_points):
                point = newest - level.head_points + 1 + offset
                if point >= 0:
                    points[(index, point)] = (scores[0, row + offset], distances[0, row + offset])
            row += level.head_points
    return points


def assert_same_points(expected: dict, got: dict) -> None:
    """Scores, and offsets (the network's output: distances in units of the level's stride),
    equal to ``TOLERANCE`` at every point."""
    missing = sorted(set(expected) - set(got))
    assert not missing, f"the step graph never gave points {missing[:5]}"
    for (level, point), (scores, distances) in expected.items():
        got_scores, got_distances = got[(level, point)]
        assert torch.allclose(got_scores, scores, atol=TOLERANCE, rtol=0), (level, point)
        offsets, got_offsets = distances / 2**level, got_distances / 2**level
        assert torch.allclose(got_offsets, offsets, atol=TOLERANCE, rtol=0), (level, point)


def random_model(config: ModelConfig, seed: int) -> LoCo:
    """A LoCo whose weights are far from their initial values (zero-initialised CDP windows and
    unit norms would hide misplaced inputs)."""
    torch.manual_seed(seed)
    model = LoCo(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(["loco", "no_lcc", "audio_only", "visual_only"]),
    levels=st.integers(1, 4),
    hop_power=st.integers(0, 3),
    steps=st.integers(1, 90),
    proj_layers=st.integers(1, 2),
    blocks=st.integers(1, 2),
    encoder_radius=st.integers(1, 4),
    cdp_radius=st.integers(1, 4),
    lcc_radius=st.integers(1, 3),
    head_layers=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_step_graph_equals_the_whole_clip_run(
    variant, levels, hop_power, steps, proj_layers, blocks, encoder_radius, cdp_radius,
    lcc_radius, head_layers, seed,
):  # fmt: skip
    config = tiny_model_config(
        variant=variant,
        position_encoding="none",
        num_levels=levels,
        regression_ranges=[[0, 4]] * levels,
        window=2 ** (levels - 1) * 4,
        num_proj_layers=proj_layers,
        num_encoder_blocks=blocks,
        encoder_radius=encoder_radius,
        cdp_radius=cdp_radius,
        lcc_radius=lcc_radius,
        num_head_layers=head_layers,
    )
    model = random_model(config, seed)
    generator = torch.Generator().manual_seed(seed)
    visual = torch.randn(1, steps, config.visual_dim, generator=generator)
    audio = torch.randn(1, steps, config.audio_dim, generator=generator)
    graph = StepGraph(model, 2**hop_power)
    assert_same_points(whole_clip(model, visual, audio), step_by_step(graph, visual, audio))


def test_the_edge_model_streams_a_long_clip_with_long_and_short_events():
    """The shipped network's size (configs/edge.yaml), on 150 s (600 steps, over twice the
    64-s window) whose features hold events of 1 s to 60 s: no window edge anywhere."""
    config = load_config("configs/edge.yaml").model
    model = random_model(config, 0)
    rng = np.random.default_rng(0)
    steps = 600
    visual = 0.3 * rng.standard_normal((steps, config.visual_dim))
    audio = 0.3 * rng.standard_normal((steps, config.audio_dim))
    for start, length in [(10, 4), (40, 240), (300, 8), (330, 160), (520, 80)]:  # steps
        pattern = rng.standard_normal(config.visual_dim), rng.standard_normal(config.audio_dim)
        visual[start : start + length] += pattern[0]
        audio[start : start + length] += pattern[1]
    visual = torch.tensor(visual, dtype=torch.float32)[None]
    audio = torch.tensor(audio, dtype=torch.float32)[None]
    graph = StepGraph(model, 4)
    assert_same_points(whole_clip(model, visual, audio), step_by_step(graph, visual, audio))


def test_models_with_absolute_positions_or_dense_attention_have_no_step_graph():
    with pytest.raises(NotStreamable, match="position_encoding"):
        plan_steps(tiny_model_config(position_encoding="sinusoidal"), 4)
    with pytest.raises(NotStreamable, match="densely"):
        plan_steps(tiny_model_config(variant="no_cdp", position_encoding="none"), 4)
    with pytest.raises(ValueError, match="power of two"):
        plan_steps(tiny_model_config(position_encoding="none"), 3)


def test_the_exported_step_graph_in_the_runtime_equals_the_whole_clip_run(tiny_model_dir):
    """`StepRunner` on ``loco_step.onnx`` in ONNX Runtime, over a clip shorter than the window:
    its points are the window graph's (the whole clip in one run) in the checkpoint, in torch."""
    card = read_card(tiny_model_dir)
    assert STEP_GRAPH in card.files and card.window.step_hop == 4
    info = card.window
    steps = info.window - 2  # the last call padded; the points stay on the window's grid
    rng = np.random.default_rng(1)
    visual = rng.standard_normal((steps, info.visual_dim), dtype=np.float32)
    audio = rng.standard_normal((steps, info.audio_dim), dtype=np.float32)
    with ModelDir(tiny_model_dir) as model:
        runner = StepRunner(model.step_graph, info)
        runner.push(visual[:8], audio[:8])
        runner.push(visual[8:], audio[8:])  # the last call padded
        scores, segments, positions = runner.window_outputs(0)
    torch_graph = TorchBackend.from_checkpoint(tiny_model_dir / "loco.pt", window=info.window)
    mask = np.zeros((1, info.window), np.float32)
    mask[:, :steps] = 1.0
    pad = ((0, 0), (0, info.window - steps), (0, 0))
    expected = torch_graph.run(
        {"visual": np.pad(visual[None], pad), "audio": np.pad(audio[None], pad), "mask": mask}
    )
    np.testing.assert_allclose(scores, expected["scores"][0], atol=TOLERANCE)
    valid = expected["scores"][0].max(axis=1) > 0
    np.testing.assert_allclose(segments[valid], expected["segments"][0][valid], atol=1e-3)
    np.testing.assert_array_equal(positions[valid], info.point_positions[valid])


def test_offline_detection_on_the_step_graph_finds_what_the_whole_clip_window_finds(
    tiny_model_dir,
):
    """`loco-detect`'s step-graph path on a clip of 30 steps (its last call padded) decodes the
    same candidates as the window graph run once over the whole clip."""
    rng = np.random.default_rng(2)
    with ModelDir(tiny_model_dir) as model:
        info = model.info
        decode = dataclasses.replace(info.decode, score_threshold=0.0, max_segments=50)
        visual = rng.standard_normal((30, info.visual_dim), dtype=np.float32)
        audio = rng.standard_normal((30, info.audio_dim), dtype=np.float32)
        stepped = detect_steps(model.step_graph, info, visual, audio, decode)
        positions = info.point_positions
        windowed = detect_features(model.run_window, visual, audio, info.window, positions, decode)
    assert len(stepped) == len(windowed) == 50
    np.testing.assert_allclose(stepped.score, windowed.score, atol=TOLERANCE)
    np.testing.assert_allclose(np.sort(stepped.peak), np.sort(windowed.peak))
    np.testing.assert_allclose(stepped.start, windowed.start, atol=1e-3)
    np.testing.assert_allclose(stepped.end, windowed.end, atol=1e-3)
    assert np.array_equal(stepped.label, windowed.label)
