"""Shared helpers of the stream tests (no tests here): models, synthetic clips, candidate oracles.

Tests that need real detections use `real_model_dir`: the trained default model, which must be
present (a missing one fails, never skips). Switch `REAL_MODEL` to "tiny" only to develop them
without it.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from loco_stream.bundle import DEFAULT_MODEL_DIR, WINDOW_GRAPH
from loco_stream.postprocess import Segments
from loco_stream.stream.stitch import Event
from loco_stream.synth import render_audio, render_frame, sample_scenario
from loco_stream.synth.scenario import Scenario
from tests.media import mux_tone_frames
from tests.tiny_model import session_tiny_model_dir

REAL_MODEL = "default"  # "default": the packaged trained model; "tiny": the random tiny one


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random model directory, exported once per test session."""
    return session_tiny_model_dir(tmp_path_factory)


def real_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained default model (fails loudly when it is missing)."""
    if REAL_MODEL == "tiny":
        return tiny_model_dir(tmp_path_factory)
    if not (DEFAULT_MODEL_DIR / WINDOW_GRAPH).is_file():
        pytest.fail(
            f"the default model is missing from {DEFAULT_MODEL_DIR}: build it with "
            "`python -m train.default_model` (tests that need real detections cannot run)"
        )
    return DEFAULT_MODEL_DIR


def write_scenario_clip(
    scenario: Scenario, path: Path, fps: int = 16, sample_rate: int = 16000, channels: int = 1
) -> Path:
    """Render ``scenario`` at any frame rate, sample rate and channel count into an mp4."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = video.height = render_frame(scenario, 0.0).shape[0]
        video.pix_fmt = "yuv420p"
        audio = out.add_stream(
            "aac", rate=sample_rate, layout="stereo" if channels == 2 else "mono"
        )
        for k in range(round(scenario.duration * fps)):
            frame = av.VideoFrame.from_ndarray(render_frame(scenario, k / fps), format="rgb24")
            frame.pts, frame.time_base = k, fractions.Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        mux_tone_frames(out, audio, render_audio(scenario, sample_rate), sample_rate, channels)
    return path


def demo_scenario(seed: int, duration: float) -> Scenario:
    return sample_scenario(seed, 0, duration, split="demo")


def finals(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == "end"]


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def found(truth: list[tuple[float, float, int]], events: list[Event], min_iou: float) -> int:
    """How many true (start, end, label_id) events a final event of their class matches."""
    return sum(
        any(e.label_id == k and tiou((s, t), (e.start, e.end)) >= min_iou for e in events)
        for s, t, k in truth
    )


def assert_well_formed(events: list[Event]) -> None:
    """Every id starts once, then ends once, never the other way; emission times never go back."""
    started: dict[int, Event] = {}
    ended: set[int] = set()
    for event in events:
        if event.type == "start":
            assert event.id not in started, f"#{event.id} started twice"
            started[event.id] = event
        else:
            assert event.id in started and event.id not in ended, f"#{event.id} ended badly"
            assert event.start <= event.end <= event.emitted_at + 1e-6
            ended.add(event.id)
    assert set(started) == ended, f"events never ended: {sorted(set(started) - ended)}"
    times = [e.emitted_at for e in events]
    assert times == sorted(times)


def oracle_candidates(
    truth: list[tuple[float, float, int]],
    window_start: float,
    now: float,
    rng: np.random.Generator,
    noise: float = 0.1,
) -> Segments:
    """What a good detector's window over [window_start, now] decodes: each visible true event
    (cut by the window's edges, boundaries jittered, score ~0.8), a weaker soft-NMS duplicate of
    it, and weak junk."""
    rows = []
    for start, end, label in truth:
        s, e = max(start, window_start), min(end, now)
        if e - s < 0.5:
            continue
        s_hat = s + rng.normal(0, noise) if s > window_start else s
        e_hat = e + rng.normal(0, noise) if e < now else e
        score = float(np.clip(rng.normal(0.8, 0.05), 0, 1))
        rows.append((s_hat, e_hat, label, score))
        rows.append((s_hat + 0.3 * (e_hat - s_hat), e_hat, label, 0.5 * score))
    for _ in range(3):
        s = rng.uniform(window_start, now)
        rows.append((s, min(now, s + rng.uniform(0.2, 2)), int(rng.integers(0, 3)), 0.05))
    start, end, label, score = (np.array(c) for c in zip(*rows, strict=True))
    return Segments(
        np.clip(start, window_start, now), np.clip(end, window_start, now), label, score
    )
