"""Context windows: what a step's extractors look at (the last W seconds before the step's end),
how the first steps are padded, and that memory stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

from loco_stream.features.steps import StepAssembler, StepSpec
from loco_stream.sources.base import AudioBlock, VideoFrame

RATE = 16000


def ramp_blocks(seconds: float, block: int = 1000) -> list[AudioBlock]:
    """Audio whose sample n has value n (exactly representable up to 2**24)."""
    total = round(seconds * RATE)
    values = np.arange(total, dtype=np.float32)
    return [AudioBlock(b / RATE, values[b : b + block], RATE) for b in range(0, total, block)]


def numbered_frames(times: list[float], size: int = 8) -> list[VideoFrame]:
    """Frame k is a flat picture of value k (mod 256)."""
    return [VideoFrame(t, np.full((size, size, 3), k % 256, np.uint8)) for k, t in enumerate(times)]


def assemble(spec: StepSpec, items) -> list:
    assembler = StepAssembler(spec)
    steps = []
    for item in items:
        assembler.add(item)
        steps += list(assembler.steps())
    assembler.end()
    return steps + list(assembler.steps())


def test_audio_window_is_the_last_w_seconds_before_the_step_end_silence_before_time_0():
    spec = StepSpec(step_seconds=0.25, frames_per_step=1, frame_size=8, audio_window_seconds=0.96)
    items = numbered_frames([0.0, 1.0, 2.0]) + ramp_blocks(2.0)
    steps = assemble(spec, items)
    assert len(steps) == 8
    window = 15360  # 0.96 s
    for step in steps:
        end = (step.index + 1) * 4000
        expected = np.arange(end - window, end, dtype=np.float32)
        expected[expected < 0] = 0.0  # before time 0: silence
        np.testing.assert_array_equal(step.audio, expected)
    assert (steps[0].audio[: window - 4000] == 0).all() and steps[0].audio[-1] == 3999


@pytest.mark.parametrize(
    ("step", "window", "frames"),
    [(0.25, 0.25, 4), (0.32, 0.96, 3), (0.25, 1.0, 4), (0.25, 0.25, 1)],
)
def test_frames_are_on_screen_at_evenly_spaced_instants_of_the_window(step, window, frames):
    spec = StepSpec(
        step_seconds=step, frames_per_step=frames, frame_size=8, visual_window_seconds=window
    )
    times = [k * 0.1 for k in range(31)]  # 10 fps for 3 s
    steps = assemble(spec, numbered_frames(times) + ramp_blocks(3.0))
    assert len(steps) == int(3.0 / step + 1e-9)
    for s in steps:
        instants = (s.index + 1) * step - window + (np.arange(frames) + 0.5) * window / frames
        on_screen = [max(0, int(np.floor(t / 0.1 + 1e-9))) for t in instants]  # first frame
        assert s.frames.shape == (frames, 8, 8, 3)
        assert list(s.frames[:, 0, 0, 0]) == on_screen, s.index


def test_memory_is_bounded_by_the_windows():
    spec = StepSpec(
        step_seconds=0.32, frames_per_step=3, frame_size=8,
        audio_window_seconds=0.96, visual_window_seconds=0.96,
    )  # fmt: skip
    assembler = StepAssembler(spec)
    times = [k / 30 for k in range(30 * 20)]
    frames = iter(numbered_frames(times))
    for block in ramp_blocks(20.0, block=533):
        assembler.add(block)
        for frame in frames:
            assembler.add(frame)
            if frame.t > block.t:
                break
        list(assembler.steps())
        assert len(assembler._audio) <= spec.samples_per_window + spec.samples_per_step + 533
        assert len(assembler._frames) <= 0.96 * 30 + 0.32 * 30 + 3
    assert assembler.next_step >= 60


def test_a_window_as_long_as_the_step_is_the_step_itself():
    legacy = StepSpec(step_seconds=0.25, frames_per_step=4, frame_size=8)
    assert legacy.audio_window_seconds == legacy.visual_window_seconds == 0.25
    steps = assemble(legacy, numbered_frames([k * 0.1 for k in range(21)]) + ramp_blocks(2.0))
    for s in steps:
        np.testing.assert_array_equal(s.audio, np.arange(s.index * 4000, (s.index + 1) * 4000))


@pytest.mark.parametrize("field", ["step_seconds", "audio_window_seconds", "visual_window_seconds"])
def test_a_window_that_is_not_positive_is_refused(field):
    with pytest.raises(ValueError, match=f"StepSpec.{field} must be positive"):
        StepSpec(**{field: 0.0})
