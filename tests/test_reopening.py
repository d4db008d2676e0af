"""Sources say whether they are live (``is_live``: their clock times the emission of events), and
a merge can continue a stream's clock, as `ReopeningSource` does when it reopens a camera and a
microphone after a failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loco_stream.sources import (
    CameraSource,
    FileSource,
    MergedSource,
    MicrophoneSource,
    ReopeningSource,
    StreamClock,
)
from loco_stream.sources.demo import DemoSource


def test_live_sources_say_so(clip: Path) -> None:
    assert CameraSource.is_live and MicrophoneSource.is_live and ReopeningSource.is_live
    with FileSource(clip) as fast, FileSource(clip, realtime=True) as paced:
        assert not fast.is_live and paced.is_live
        assert not DemoSource(seed=1, duration=2.0, realtime=False).is_live
        assert DemoSource(seed=1, duration=2.0).is_live
        with MergedSource(fast, None) as merged:
            assert not merged.is_live
    with MergedSource(FileSource(clip, realtime=True), FileSource(clip)) as merged:
        assert merged.is_live  # one paced side paces the merge


def test_a_merge_continues_the_clock_it_is_given(clip: Path) -> None:
    """A reopened pair goes on where the stream was: its first item is stamped on the old clock
    (here 3 s after its origin), not at t=0."""
    clock = StreamClock()
    clock.stamp(time.monotonic() - 3.0)  # the stream began 3 s ago
    video = FileSource(clip, realtime=True)
    with MergedSource(video, None, clock=clock) as merged:
        assert merged.clock is clock and video.clock is clock
        first = next(iter(merged))
    assert first.t == pytest.approx(3.0, abs=0.3)
