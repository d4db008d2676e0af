"""The clip encoder keeps within its share of the process's CPU: the budget's account holds
whatever the costs, a steady stream gets the share's worth of frames, a quiet one saves only so
much, and a recording over its budget keeps a frame every half second and all its sound."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loco_stream.sinks.cpu_budget import CpuBudget
from loco_stream.sinks.recording import BUDGET_FLOOR_MS
from loco_stream.sources.base import AudioBlock, VideoFrame
from tests.test_sinks_evidence import record_one_clip

FPS = 16


class FakeCpu:
    """CPU clocks moved by hand: ``rest`` (the rest of the process) and ``own`` (the encoder)."""

    def __init__(self) -> None:
        self.rest = self.own = 0.0

    def budget(self, share: float, most_saved: float = 1.0) -> CpuBudget:
        """A budget on these clocks (the rest's CPU so far counts: the bucket starts with its
        share)."""
        return CpuBudget(share, most_saved, lambda: self.rest + self.own, lambda: self.own)


@settings(max_examples=200, deadline=None)
@given(
    share=st.floats(0.01, 0.5),
    most_saved=st.floats(0.0, 2.0),
    before=st.floats(0.0, 5.0),
    steps=st.lists(st.tuples(st.floats(0.0, 0.05), st.floats(0.0, 0.02)), min_size=1, max_size=300),
)
def test_the_encoder_never_spends_more_than_its_share_and_one_frame(
    share: float, most_saved: float, before: float, steps: list[tuple[float, float]]
) -> None:
    """Whatever the rest spends (``before`` the budget, loading the model, and after) and a
    frame costs, the encoder's CPU stays within ``share`` of the rest's, overdrawn by one frame
    at most."""
    cpu = FakeCpu()
    cpu.rest = before
    budget = cpu.budget(share, most_saved)
    for rest_spent, frame_cost in steps:
        cpu.rest += rest_spent
        if budget.allows():
            cpu.own += frame_cost
    assert cpu.own <= share * cpu.rest + max(cost for _, cost in steps) + 1e-9


def test_a_steady_stream_gets_its_share_of_frames_and_a_quiet_one_saves_a_bounded_burst() -> None:
    """The rest spends 10 ms a frame, a frame costs 2 ms, the share is 8%: 0.8 ms earned a
    frame buys 40% of the frames. After 1,000 s of the rest's CPU with no frame, the saved
    second buys 500 frames, not 40,000."""
    cpu = FakeCpu()
    budget = cpu.budget(0.08)
    taken = 0
    for _ in range(1000):
        cpu.rest += 0.010
        if budget.allows():
            cpu.own += 0.002
            taken += 1
    assert 380 <= taken <= 420, taken
    cpu.rest += 1000.0
    burst = 0
    while budget.allows():
        cpu.own += 0.002
        burst += 1
    assert burst == 500, burst


def test_a_recording_over_its_budget_keeps_a_frame_every_half_second_and_all_its_sound(
    tmp_path: Path,
) -> None:
    """A budget that never earns (the rest of the process idle): of a 0-5.3 s clip of a 16-fps
    stream, the clip keeps its first frame, one every BUDGET_FLOOR_MS and its last (at 5.25 s,
    off that grid), the rest counted as skipped, and its sound lasts the 5.3 s."""
    cpu = FakeCpu()
    items: list = [
        VideoFrame(k / FPS, np.full((64, 96, 3), 20 * (k % 12), np.uint8)) for k in range(8 * FPS)
    ]
    tone = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32) * 0.3
    items += [AudioBlock(float(second), tone, 16000) for second in range(8)]
    clip, recording = record_one_clip(
        tmp_path / "clip.mp4", items, until=5.3, budget=cpu.budget(0.08)
    )
    with av.open(str(clip.path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
        container.seek(0)
        samples = sum(frame.samples for frame in container.decode(audio=0))
    gaps = np.diff(times)
    assert times[0] < 1 / FPS and gaps.max() <= BUDGET_FLOOR_MS / 1000 + 1 / FPS, times
    assert abs(times[-1] - 5.25) < 1e-3, times
    assert 5.3 * 1000 / BUDGET_FLOOR_MS <= len(times) <= 5.3 * 1000 / BUDGET_FLOOR_MS + 2, times
    assert clip.frames == len(times) and recording.skipped == 5.25 * FPS + 1 - len(times)
    assert abs(samples / 16000 - 5.3) < 0.1, samples
