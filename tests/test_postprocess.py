"""Host-side decoding: threshold, top-k, Gaussian soft-NMS, window tiling, step-to-time mapping."""

from __future__ import annotations

import numpy as np

from loco_stream.config import DecodeConfig
from loco_stream.offline import detect_features, window_starts
from loco_stream.postprocess import Segments, decode, soft_nms, steps_to_seconds


def test_soft_nms_decays_overlaps_of_the_same_class_only():
    segments = Segments(
        start=np.array([0.0, 0.0, 0.0, 20.0]),
        end=np.array([10.0, 10.0, 10.0, 30.0]),
        label=np.array([0, 0, 1, 0]),
        score=np.array([0.9, 0.8, 0.7, 0.6]),
        peak=np.array([5.0, 4.0, 3.0, 25.0]),
    )
    kept = soft_nms(segments, sigma=0.4, min_score=0.001, max_segments=10)
    # each kept segment keeps the moment it was scored at
    assert {(int(k), float(p)) for k, p in zip(kept.label, kept.peak, strict=True)} == {
        (0, 5.0),
        (0, 4.0),
        (1, 3.0),
        (0, 25.0),
    }
    by_score = {(int(k), round(float(s), 4)) for k, s in zip(kept.label, kept.score, strict=True)}
    # the duplicate (tIoU 1) decays by exp(-1 / 0.4); the other class and the disjoint one do not
    assert by_score == {(0, 0.9), (0, round(0.8 * np.exp(-1 / 0.4), 4)), (1, 0.7), (0, 0.6)}
    assert list(kept.score) == sorted(kept.score, reverse=True)
    assert len(soft_nms(segments, 0.4, 0.001, max_segments=2)) == 2


def test_decode_thresholds_and_reads_class_aware_segments():
    scores = np.array([[0.9, 0.0005], [0.0, 0.5]])  # (N=2 points, C=2)
    segments = np.array([[[1.0, 4.0], [9.0, 9.5]], [[0.0, 1.0], [5.0, 8.0]]])  # (N, C, 2)
    positions = np.array([0.0, 2.0])  # (N,): the points' steps (a stride-2 level's second point)
    found = decode(scores, segments, positions, DecodeConfig())
    assert sorted(
        zip(found.label.tolist(), found.start.tolist(), found.end.tolist(), strict=True)
    ) == [
        (0, 1.0, 4.0),
        (1, 5.0, 8.0),
    ]
    # each candidate's peak is the position of the point whose score it is
    assert sorted(zip(found.label.tolist(), found.peak.tolist(), strict=True)) == [(0, 0), (1, 2)]


def test_steps_to_seconds_clips_to_the_clip():
    segments = Segments(
        np.array([-1.0, 3.5]), np.array([2.0, 80.0]), np.array([0, 1]), np.ones(2), np.array([0, 9])
    )
    seconds = steps_to_seconds(segments, step_seconds=0.25, step_offset=0.125, duration=10.0)
    np.testing.assert_allclose(seconds.start, [0.0, 1.0])
    np.testing.assert_allclose(seconds.end, [0.625, 10.0])
    np.testing.assert_allclose(seconds.peak, [0.125, 2.375])


def test_long_clips_are_tiled_completely_with_bounded_windows():
    assert window_starts(50, 64) == [0]
    starts = window_starts(200, 64)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(b - a <= 32 for a, b in zip(starts, starts[1:], strict=False))
    seen_shapes = []

    def run_window(visual, audio, mask):
        seen_shapes.append(visual.shape)
        positions = np.arange(64, dtype=np.float32)
        scores = (mask[0] * (visual[0, :, 0] > 0))[:, None].astype(np.float32)  # (N=64, C=1)
        segments = np.stack([positions - 0.5, positions + 0.5], axis=1)[None]
        return scores[None], segments

    visual = np.zeros((200, 3), dtype=np.float32)
    visual[150, 0] = 1.0  # one "event" at step 150, seen only by windows covering it
    audio, positions = np.zeros((200, 2), np.float32), np.arange(64, dtype=np.float32)
    found = detect_features(run_window, visual, audio, 64, positions, DecodeConfig())
    assert set(seen_shapes) == {(1, 64, 3)}
    # three windows saw it: one segment at full score, the other two soft-NMS'd duplicates
    assert len(found) == 3 and found.start[0] == 149.5 and found.end[0] == 150.5
    assert found.peak[0] == 150.0  # the point scored, in the clip's steps like its bounds
    np.testing.assert_allclose(found.score, [1.0, np.exp(-1 / 0.4), np.exp(-2 / 0.4)], rtol=1e-6)
