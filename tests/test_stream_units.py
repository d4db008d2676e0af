"""Stream parts without a model: the feature ring, records and outputs, the demo source."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from loco_stream.bundle import WindowInfo
from loco_stream.config import DecodeConfig, ModelConfig
from loco_stream.sources.base import AudioBlock, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.engine import decode_window
from loco_stream.stream.output import JsonlWriter, event_line
from loco_stream.stream.ring_buffer import FeatureRing
from loco_stream.stream.stitch import Event
from tests.timelines import ModelLikeWindows, stream_windows

CLASSES = ["dog", "guitar", "car"]


def one_event() -> list[Event]:
    """The start and end records of one 2-s event of class 1 (guitar)."""
    windows = ModelLikeWindows([(2.0, 4.0, 1)], seed=0, junk=0)
    return stream_windows(windows, 8.0, classes=CLASSES)


# ---- FeatureRing ----


def test_ring_is_left_aligned_until_full_then_keeps_the_last_t_steps_in_order() -> None:
    ring = FeatureRing(window=4, visual_dim=2, audio_dim=1)
    for i in range(3):
        ring.push(i, np.full(2, i), np.full(1, 10 + i))
    visual, audio, mask = ring.window_inputs()
    assert visual.shape == (1, 4, 2) and audio.shape == (1, 4, 1) and mask.shape == (1, 4)
    assert mask[0].tolist() == [1, 1, 1, 0] and visual[0, :3, 0].tolist() == [0, 1, 2]
    assert ring.first_step == 0 and ring.size == 3
    for i in range(3, 10):
        ring.push(i, np.full(2, i), np.full(1, 10 + i))
    visual, audio, mask = ring.window_inputs()
    assert visual[0, :, 0].tolist() == [6, 7, 8, 9] and audio[0, :, 0].tolist() == [16, 17, 18, 19]
    assert mask[0].tolist() == [1, 1, 1, 1] and ring.first_step == 6 and ring.size == 4


def test_a_window_s_candidates_and_their_peaks_are_placed_in_stream_time() -> None:
    """A window whose row 0 is step 400 (100 s in, 0.25-s steps centred 0.125 s in): a point at
    row 10 scoring 0.9 for steps 8-12 is 102.125-103.125 s, scored at 102.625 s."""
    scores = np.zeros((64, 2), np.float32)
    scores[10, 1] = 0.9
    segments = np.tile(np.array([[8.0, 12.0]], np.float32), (64, 1))  # (N, 2), class-agnostic
    info = WindowInfo(("a", "b"), 64, 4, 0.25, 0.125, DecodeConfig(), ModelConfig())
    positions = np.arange(64, dtype=np.float32)  # one level: a point a step
    found = decode_window(scores, segments, positions, 400, 116.0, info, DecodeConfig())
    assert len(found) == 1 and found.label[0] == 1
    assert (found.start[0], found.end[0], found.peak[0]) == (102.125, 103.125, 102.625)


def test_ring_refuses_a_step_out_of_order() -> None:
    ring = FeatureRing(window=4, visual_dim=1, audio_dim=1)
    ring.push(0, np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="step 2 pushed, but step 1"):
        ring.push(2, np.zeros(1), np.zeros(1))


# ---- records ----


def test_records_follow_the_json_lines_contract() -> None:
    (start, end) = one_event()
    assert set(start.to_record()) == {
        "type",
        "id",
        "label",
        "label_id",
        "start",
        "score",
        "emitted_at",
    }
    assert end.to_record()["type"] == "end" and end.to_record()["end"] == end.end
    line = event_line(end)
    assert line.startswith(f"[{end.emitted_at:8.2f}s] END   #{end.id} guitar ")
    assert f"{end.start:.2f}–{end.end:.2f} s" in line


# ---- JsonlWriter ----


def test_jsonl_writer_writes_whole_flushed_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"type": "start", "id": 0})
        assert path.read_text() == '{"type": "start", "id": 0}\n'  # on disk before close
        writer.write({"type": "end", "id": 0, "label": "x" * 10000})
        lines = path.read_text().splitlines()
        assert [json.loads(line)["type"] for line in lines] == ["start", "end"]
    assert os.path.getsize(path) == len(path.read_bytes())


# ---- DemoSource ----


def test_demo_source_items_are_in_time_order_with_its_ground_truth() -> None:
    source = DemoSource(seed=5, duration=3.0, realtime=False)
    items = list(source)
    frames = [i for i in items if isinstance(i, VideoFrame)]
    blocks = [i for i in items if isinstance(i, AudioBlock)]
    assert len(frames) == 48 and frames[1].t == 1 / 16 and frames[0].image.shape == (112, 112, 3)
    assert sum(len(b.samples) for b in blocks) == 48000 and blocks[0].sample_rate == 16000
    # an audio block is handed out once its last sample is "captured"
    released = [i.t if isinstance(i, VideoFrame) else i.t + i.duration for i in items]
    assert released == sorted(released)
    assert source.ground_truth == list(source.scenario.events)
    assert source.stats.frames == 48


def test_demo_source_is_paced_in_real_time() -> None:
    source = DemoSource(seed=5, duration=1.0)
    began = time.monotonic()
    for item in source:
        if isinstance(item, VideoFrame) and item.t >= 0.5:
            assert time.monotonic() - began == pytest.approx(0.5, abs=0.1)
            source.close()
    assert time.monotonic() - began < 0.7


# ---- overlay ----


def test_overlay_draws_frames_with_the_open_and_ended_events(monkeypatch) -> None:
    import cv2

    from loco_stream.stream.output import Overlay

    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q"))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    overlay = Overlay()
    start, end = one_event()
    overlay.on_event(start)
    overlay.show(np.zeros((112, 112, 3), np.uint8), 3.0)
    overlay.on_event(end)
    time.sleep(0.05)
    overlay.show(np.zeros((112, 112, 3), np.uint8), 6.0)
    overlay.close()
    assert len(shown) == 2 and shown[0].shape == (480, 480, 3)
    assert shown[0].any() and overlay.quit  # text drawn; q asks the stream to stop
