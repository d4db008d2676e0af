"""Evidence that cannot be written is counted and warned about while detection goes on; the
folder stays within its bound, oldest files first; a clip holds all its sound and its snapshot
the frame asked for; overlapping clips are encoded once."""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from loco_stream import Detector
from loco_stream.sinks import EvidenceRecorder
from loco_stream.sinks.clip import ClipFile
from loco_stream.sinks.recording import Recording
from loco_stream.sinks.retention import Retention
from loco_stream.sources.base import AudioBlock, VideoFrame
from loco_stream.synth import render_audio, render_frame
from tests.test_sinks_support import replay_into_evidence
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


def record_one_clip(
    path: Path, items: list, max_fps: float | None = None, until: float = math.inf, **options
) -> tuple[ClipFile, Recording]:
    """``items`` recorded into one clip from stream time 0 to ``until`` (their end), closed;
    the clip and its recording."""
    clip = ClipFile(path, 0.0)
    clip.until, clip.done = until, True
    recording = Recording(0.0, max_fps, **options)
    recording.join(clip)
    for item in sorted(items, key=lambda item: item.t):
        recording.add(item)
    recording.finish()
    assert recording.through() == [clip]
    clip.close()
    return clip, recording


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
    clip, _ = record_one_clip(tmp_path / "clip.mp4", items)
    with av.open(str(clip.path)) as container:
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
    assert abs(samples / 16000 - 8.0) < 0.1, samples
    clip.write_snapshot(3.5, tmp_path / "snapshot.jpg")
    snapshot = cv2.imread(str(tmp_path / "snapshot.jpg"))  # BGR
    seen = snapshot.reshape(-1, 3).mean(axis=0)[::-1]
    assert np.abs(seen - colours[3]).max() < 12, (seen, colours[3])


def test_a_frame_rate_cap_halves_the_frames_and_keeps_the_clip_s_length(tmp_path: Path) -> None:
    """--evidence-fps 8 on a 16-fps source: every other frame, the same 8 s; 0 is refused."""
    items = [
        VideoFrame(k / FPS, np.full((64, 96, 3), 16 * (k % 16), np.uint8)) for k in range(8 * FPS)
    ]
    clip, _ = record_one_clip(tmp_path / "clip.mp4", items, max_fps=8)
    with av.open(str(clip.path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        length = container.duration / 1e6
    assert clip.frames == frames == 4 * FPS
    assert abs(length - 8.0) < 0.25, length
    with pytest.raises(ValueError, match="--evidence-fps"):
        EvidenceRecorder(tmp_path / "evidence", fps=0)


def test_a_width_cap_scales_the_clip_down_and_keeps_the_snapshot_sharp(tmp_path: Path) -> None:
    """--evidence-width 48 on 96x64 frames: a 48x32 clip (the aspect kept), a 96x64 snapshot;
    a width under 32 is refused."""
    items = [VideoFrame(k / FPS, np.full((64, 96, 3), 8 * k, np.uint8)) for k in range(2 * FPS)]
    clip, _ = record_one_clip(tmp_path / "clip.mp4", items, max_width=48)
    with av.open(str(clip.path)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (48, 32)
    clip.write_snapshot(1.0, tmp_path / "snapshot.jpg")
    assert cv2.imread(str(tmp_path / "snapshot.jpg")).shape[:2] == (64, 96)
    with pytest.raises(ValueError, match="--evidence-width"):
        EvidenceRecorder(tmp_path / "evidence", width=8)


def test_a_clip_cut_from_the_stream_runs_from_pre_before_its_start_to_post_after_its_end(
    tmp_path: Path,
) -> None:
    """Items reach the encoder in batches: the clip still holds every frame and all the sound
    from start - pre to end + post, the last part of a batch included (records arrive late, as
    the stitcher emits them: the start at 4 s, the end at 6 s, before the clip is through). The
    snapshot shows the end record's peak (4.2 s), not the event's middle (3.5 s)."""
    recorder = EvidenceRecorder(tmp_path, pre=1.0, post=1.5, cpu_percent=None)
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


def stream_items(seconds: int) -> tuple[list, list[tuple[int, int, int]]]:
    """``seconds`` of 16-fps frames whose colour changes each second (the colours, RGB, are
    returned too) and a tone in blocks of 368 samples, as a file source hands them out."""
    colours = [(25 * k % 256, 240 - 11 * k, 90) for k in range(seconds)]
    items: list = [
        VideoFrame(k / FPS, np.full((64, 96, 3), colours[k // FPS], np.uint8))
        for k in range(seconds * FPS)
    ]
    block = 368
    for k in range(seconds * 16000 // block):
        samples = np.full(block, 0.2, np.float32) * (-1) ** np.arange(block)
        items.append(AudioBlock(k * block / 16000, samples, 16000))
    return sorted(items, key=lambda item: item.t), colours


@pytest.mark.parametrize(
    ("second_start_at", "shared"),
    # the second start record: before the first clip is complete, after it, after its recording
    [(8.6, True), (11.0, True), (14.5, False)],
)
def test_overlapping_clips_are_encoded_once_and_each_is_whole(
    tmp_path: Path, second_start_at: float, shared: bool
) -> None:
    """Event 1 (3-7 s) and event 2 (8.5-12 s), pre 1 s and post 2 s: clips 2-9 s and 7.5-14 s.
    When the second start record comes before the first clip is complete, or after it while its
    recording still lingers (7.5 s is encoded then: the second clip starts at the keyframe
    before it and is shown from 7.5 s, an edit list), the overlap is encoded once (12 s of
    frames for 13.5 s of clips); when it comes after the recording closed, the second clip has
    one of its own. Either way each clip shows every frame and all the sound of its span from
    its first moment, and its snapshot shows its peak."""
    recorder = EvidenceRecorder(tmp_path, pre=1.0, post=2.0, cpu_percent=None)
    recorder.open()
    items, colours = stream_items(20)
    records = [
        {"type": "start", "id": 1, "start": 3.0, "emitted_at": 4.0},
        {"type": "end", "id": 1, "start": 3.0, "end": 7.0, "emitted_at": 8.0, "peak": 5.2},
        {"type": "start", "id": 2, "start": 8.5, "emitted_at": second_start_at},
        {"type": "end", "id": 2, "start": 8.5, "end": 12.0, "peak": 10.5, "emitted_at": 15.0},
    ]
    counters = replay_into_evidence(recorder, "cam", items, records)
    updates = {update["id"]: update for _, update in recorder.take_updates()}
    assert counters["clips"] == counters["snapshots"] == 2 and counters["failures"] == 0
    encoded = (14.0 - 2.0 if shared else (9.0 - 2.0) + (14.0 - 7.5)) * FPS
    assert abs(counters["frames_encoded"] - encoded) <= 2, counters
    for event, (begin, until, peak) in {1: (2.0, 9.0, 5.2), 2: (7.5, 14.0, 10.5)}.items():
        with av.open(str(tmp_path / updates[event]["clip"])) as container:
            times = [frame.time for frame in container.decode(video=0)]
            container.seek(0)
            samples = sum(frame.samples for frame in container.decode(audio=0))
        assert abs(times[0]) < 1 / FPS, (event, times[0])  # no frame before its begin shown
        assert abs(len(times) - (until - begin) * FPS) <= 1, (event, len(times))
        assert abs(samples / 16000 - (until - begin)) < 0.15, (event, samples)
        snapshot = cv2.imread(str(tmp_path / updates[event]["snapshot"]))  # BGR
        seen = snapshot.reshape(-1, 3).mean(axis=0)[::-1]
        assert np.abs(seen - colours[int(peak)]).max() < 12, (event, seen, colours[int(peak)])
