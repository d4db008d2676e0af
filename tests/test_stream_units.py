"""Stream parts without a model: the feature ring, stitching rules, outputs, the demo source."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from loco_stream.sources.base import AudioBlock, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.output import JsonlWriter, event_line
from loco_stream.stream.ring_buffer import FeatureRing
from loco_stream.stream.stitch import Event, StitchConfig, Stitcher
from tests.test_stream_support import assert_well_formed, finals, oracle_candidates, tiou

CLASSES = ["dog", "guitar", "car"]
HOP_S = 1.0
WINDOW_S = 16.0


def stream_oracle(
    truth: list[tuple[float, float, int]],
    duration: float,
    config: StitchConfig | None = None,
    seed: int = 0,
) -> list[Event]:
    """Stitch oracle windows of WINDOW_S every HOP_S over ``duration`` s, then flush."""
    rng = np.random.default_rng(seed)
    stitcher = Stitcher(CLASSES, config or StitchConfig())
    events: list[Event] = []
    now = HOP_S
    while now <= duration + 1e-9:
        start = max(0.0, now - WINDOW_S)
        found = oracle_candidates(truth, start, now, rng)
        events += stitcher.update(found, start, now, start > 0, emitted_at=now)
        now += HOP_S
    events += stitcher.flush(emitted_at=duration)
    return events


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


def test_ring_refuses_a_step_out_of_order() -> None:
    ring = FeatureRing(window=4, visual_dim=1, audio_dim=1)
    ring.push(0, np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="step 2 pushed, but step 1"):
        ring.push(2, np.zeros(1), np.zeros(1))


# ---- Stitcher ----


def test_each_true_event_comes_out_once_with_its_boundaries() -> None:
    truth = [(2.0, 5.0, 0), (4.0, 9.5, 1), (12.0, 13.0, 0), (14.0, 20.0, 2)]
    events = stream_oracle(truth, 30.0)
    assert_well_formed(events)
    final = finals(events)
    assert len(final) == len(truth)  # no duplicates, no junk (below threshold), none missed
    for (start, end, label), event in zip(truth, sorted(final, key=lambda e: e.start), strict=True):
        assert event.label_id == label and event.label == CLASSES[label]
        assert tiou((start, end), (event.start, event.end)) > 0.7  # 1 s events: 0.1 s jitter


def test_an_event_longer_than_the_window_is_one_event() -> None:
    truth = [(3.0, 45.0, 1)]  # 42 s, windows of 16 s
    final = finals(stream_oracle(truth, 60.0))
    assert len(final) == 1
    assert final[0].start == pytest.approx(3.0, abs=0.3) and final[0].end == pytest.approx(
        45, abs=0.3
    )


def test_latency_of_ends_is_close_after_plus_at_most_a_hop() -> None:
    config = StitchConfig()
    truth = [(2.0 + 6 * i, 4.0 + 6 * i, i % 3) for i in range(8)]
    events = stream_oracle(truth, 60.0, config)
    for event in finals(events):
        latency = event.emitted_at - event.end
        assert config.close_after <= latency < config.close_after + HOP_S + 0.3
    starts = [e for e in events if e.type == "start"]
    for event in starts:  # confirmed in confirm_windows windows
        assert event.emitted_at - event.start <= config.confirm_windows * HOP_S + 0.5


def test_a_candidate_seen_in_one_window_only_is_not_emitted() -> None:
    stitcher = Stitcher(CLASSES, StitchConfig(confirm_windows=2))
    blip = oracle_candidates([(8.0, 9.5, 0)], 0.0, 10.0, np.random.default_rng(0))
    assert stitcher.update(blip, 0.0, 10.0, False, 10.0) == []
    for now in (11.0, 12.0, 13.0):
        nothing = oracle_candidates([], now - 16, now, np.random.default_rng(1))
        assert stitcher.update(nothing, max(0, now - 16), now, False, now) == []
    assert stitcher.flush(14.0) == []


def test_end_of_stream_closes_the_open_event_with_what_is_known() -> None:
    truth = [(5.0, 30.0, 2)]
    events = stream_oracle(truth, 12.5)  # the stream stops in the middle of the event
    assert_well_formed(events)
    (final,) = finals(events)
    assert final.start == pytest.approx(5.0, abs=0.3)
    assert final.end == pytest.approx(12.0, abs=0.3)  # the last window ended at 12 s
    assert final.emitted_at == 12.5


def test_events_below_the_threshold_are_not_emitted() -> None:
    truth = [(2.0, 6.0, 0)]  # oracle score ~0.8
    assert finals(stream_oracle(truth, 12.0, StitchConfig(threshold=0.95))) == []
    assert len(finals(stream_oracle(truth, 12.0, StitchConfig(threshold=0.5)))) == 1


def test_records_follow_the_json_lines_contract() -> None:
    (start, end) = stream_oracle([(2.0, 4.0, 1)], 8.0)
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
    start, end = stream_oracle([(2.0, 4.0, 1)], 8.0)
    overlay.on_event(start)
    overlay.show(np.zeros((112, 112, 3), np.uint8), 3.0)
    overlay.on_event(end)
    time.sleep(0.05)
    overlay.show(np.zeros((112, 112, 3), np.uint8), 6.0)
    overlay.close()
    assert len(shown) == 2 and shown[0].shape == (480, 480, 3)
    assert shown[0].any() and overlay.quit  # text drawn; q asks the stream to stop
