"""Shared helpers of the stream tests (no tests here): models, synthetic clips, record checks.

Tests that need real detections use `real_model_dir`: the trained default model, which must be
present (a missing one fails, never skips). Switch `REAL_MODEL` to "tiny" only to develop them
without it.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import pytest

from loco_stream.bundle import DEFAULT_MODEL_DIR, WINDOW_GRAPH
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
