"""Tried as a new user would: the shipped model stays quiet on a still grey picture with silence."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

MINUTES = 5
FPS, SIZE, RATE = 25, (320, 240), 44100


def write_grey_silence(path: Path, seconds: float) -> Path:
    """An H.264 + AAC mp4: a still mid-grey picture, and digital silence in stereo."""
    grey = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="stereo")
        silence = np.zeros((2, 1024), np.float32)
        sent = 0
        for k in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            container.mux(video.encode(frame))
            while sent < (k + 1) * RATE / FPS:
                block = av.AudioFrame.from_ndarray(silence, format="fltp", layout="stereo")
                block.sample_rate, block.pts, block.time_base = RATE, sent, Fraction(1, RATE)
                container.mux(audio.encode(block))
                sent += 1024
        container.mux(video.encode())
        container.mux(audio.encode())
    return path


@pytest.mark.slow
def test_five_minutes_of_grey_and_silence_give_no_event(tmp_path: Path) -> None:
    clip = write_grey_silence(tmp_path / "grey_silence.mp4", MINUTES * 60)
    events = tmp_path / "events.jsonl"
    command = [sys.executable, "-m", "loco_stream.cli.stream", "--input", str(clip)]
    run = subprocess.run(
        [*command, "--output", str(events)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    stats = [r for r in records if r.get("type") == "stats"]
    assert stats and stats[-1]["media_seconds"] >= MINUTES * 60 - 1  # all of it was streamed
    emitted = [r for r in records if r.get("type") in ("start", "end")]
    assert emitted == [], f"{len(emitted)} event records on grey and silence, e.g. {emitted[:2]}"
