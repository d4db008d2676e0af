"""Evidence that cannot be written is counted and warned about while detection goes on; the
folder stays within its bound, oldest files first; a clip holds all its sound and its snapshot
the frame asked for."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from loco_stream import Detector
from loco_stream.sinks import EvidenceRecorder
from loco_stream.sinks.clip import ClipWriter
from loco_stream.sinks.retention import Retention
from loco_stream.sources.base import AudioBlock, VideoFrame
from loco_stream.synth import render_audio, render_frame
from tests.test_stream_support import demo_scenario, real_model_dir

FPS = 16


def test_a_folder_that_cannot_be_written_costs_the_files_not_the_events(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EvidenceRecorder(tmp_path / "evidence")
    scene = demo_scenario(334, 20.0)
    with Detector(real_model_dir(tmp_path_factory), sinks=[recorder]) as detector:
        (tmp_path / "evidence" / "detector").write_text("")  # in the way of the stream's folder
        for k in range(round(scene.duration * FPS)):
            t = k / FPS
            detector.push_frame(render_frame(scene, t), t)
            detector.push_audio(render_audio(scene, 16000, t, t + 1 / FPS), t)
        events = list(detector.events()) + detector.close()
    assert sum(event.type == "end" for event in events) == 2
    counters = recorder.counters()
    assert counters["clips"] == 0 and counters["failures"] == 2
    assert counters["last_error"].startswith("event 1 of detector: ")
    warnings = [r.message for r in caplog.records if r.name == "loco_stream.sinks"]
    assert warnings and all("detection goes on" in w for w in warnings)


def test_the_folder_keeps_within_its_bound_deleting_the_oldest_first(tmp_path: Path) -> None:
    old = tmp_path / "cam" / "cam-1.mp4"
    old.parent.mkdir()
    old.write_bytes(b"x" * 400)
    os.utime(old, (1, 1))  # an earlier run's file
    retention = Retention(tmp_path, max_bytes=1000)
    assert retention.total == 400
    for name in ("cam-2.mp4", "cam-2.jpg", "cam-3.mp4"):
        (tmp_path / "cam" / name).write_bytes(b"x" * 300)
        retention.add(tmp_path / "cam" / name)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        "cam-2.jpg",
        "cam-2.mp4",
        "cam-3.mp4",
    ]
    assert retention.deleted == 1 and retention.total == 900


def test_a_clip_keeps_its_sound_across_gaps_and_its_snapshot_shows_the_moment_asked(
    tmp_path: Path,
) -> None:
    """8 s of frames whose colour changes each second, and sound in blocks of 368 samples (as a
    file source hands them out) with a 0.3-s gap: the clip's audio lasts the whole 8 s, and a
    snapshot at 3.5 s shows second 3's colour."""
    colours = [(40 * k % 256, 255 - 30 * k, 90) for k in range(8)]  # RGB per second
    items: list = [
        VideoFrame(k / FPS, np.full((64, 96, 3), colours[k // FPS], np.uint8))
        for k in range(8 * FPS)
    ]
    block = 368
    for k in range(8 * 16000 // block):
        t = k * block / 16000
        if not 4.0 <= t < 4.3:
            tone = np.sin(2 * np.pi * 440 * (t + np.arange(block) / 16000)).astype(np.float32)
            items.append(AudioBlock(t, 0.3 * tone, 16000))
    writer = ClipWriter(tmp_path / "clip.mp4", 0.0)
    for item in sorted(items, key=lambda item: item.t):
        writer.add(item)
    writer.close()
    with av.open(str(writer.path)) as container:
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
    assert abs(samples / 16000 - 8.0) < 0.1, samples
    writer.write_snapshot(3.5, tmp_path / "snapshot.jpg")
    snapshot = cv2.imread(str(tmp_path / "snapshot.jpg"))  # BGR
    seen = snapshot.reshape(-1, 3).mean(axis=0)[::-1]
    assert np.abs(seen - colours[3]).max() < 12, (seen, colours[3])


def test_a_frame_rate_cap_halves_the_frames_and_keeps_the_clip_s_length(tmp_path: Path) -> None:
    """--evidence-fps 8 on a 16-fps source: every other frame, the same 8 s; 0 is refused."""
    writer = ClipWriter(tmp_path / "clip.mp4", 0.0, max_fps=8)
    for k in range(8 * FPS):
        writer.add(VideoFrame(k / FPS, np.full((64, 96, 3), 16 * (k % 16), np.uint8)))
    writer.close()
    with av.open(str(writer.path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        length = container.duration / 1e6
    assert writer.frames == frames == 4 * FPS
    assert abs(length - 8.0) < 0.25, length
    with pytest.raises(ValueError, match="--evidence-fps"):
        EvidenceRecorder(tmp_path / "evidence", fps=0)


def test_a_clip_cut_from_the_stream_runs_from_pre_before_its_start_to_post_after_its_end(
    tmp_path: Path,
) -> None:
    """Items reach the encoder in batches: the clip still holds every frame and all the sound
    from start - pre to end + post, the last part of a batch included (records arrive late, as
    the stitcher emits them: the start at 4 s, the end at 6 s, before the clip is through). The
    snapshot shows the end record's peak (4.2 s), not the event's middle (3.5 s)."""
    recorder = EvidenceRecorder(tmp_path, pre=1.0, post=1.5)
    recorder.open()
    block = 368
    colours = [(25 * k, 200 - 15 * k, 90) for k in range(10)]  # RGB per second
    items: list = [
        VideoFrame(k / FPS, np.full((64, 96, 3), colours[k // FPS], np.uint8))
        for k in range(10 * FPS)
    ]
    for k in range(10 * 16000 // block):
        samples = np.full(block, 0.2, np.float32) * (-1) ** np.arange(block)
        items.append(AudioBlock(k * block / 16000, samples, 16000))
    start = {"type": "start", "id": 1, "start": 2.0, "emitted_at": 4.0}
    end = {"type": "end", "id": 1, "start": 2.0, "end": 5.0, "emitted_at": 6.0, "peak": 4.2}
    named = None
    for item in sorted(items, key=lambda item: item.t):
        if start and item.t >= start["emitted_at"]:
            recorder.annotate("cam", start)
            start = None
        if named is None and item.t >= end["emitted_at"]:
            named = recorder.annotate("cam", end)
        recorder.on_item("cam", item)
    recorder.close()
    ((_, update),) = recorder.take_updates()
    assert update["clip"] == named["clip"] and (tmp_path / update["clip"]).exists()
    with av.open(str(tmp_path / update["clip"])) as container:
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(frames - 5.5 * FPS) <= 1, frames  # 1.0 s to 6.5 s
    assert abs(samples / 16000 - 5.5) < 0.1, samples
    assert recorder.counters()["dropped_items"] == 0
    snapshot = cv2.imread(str(tmp_path / update["snapshot"]))  # BGR
    seen = snapshot.reshape(-1, 3).mean(axis=0)[::-1]
    assert np.abs(seen - colours[4]).max() < 12, (seen, colours[4])
