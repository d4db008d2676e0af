"""Tests of the synthetic audio-visual event benchmark (loco_stream.synth) and ``loco-synth``."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from loco_stream.cli.synth import main
from loco_stream.synth import (
    CLASSES,
    FPS,
    FRAME_SIZE,
    SAMPLE_RATE,
    annotation_entry,
    render_audio,
    render_frame,
    render_frames,
    sample_scenario,
    write_clip,
)
from loco_stream.synth.classes import CLUTTER_COLOURS
from loco_stream.synth.render import _mask, sprite_pose
from loco_stream.synth.scenario import MARGIN, MIN_EVENT, Scenario, intersect
from loco_stream.synth.writer import video_codec

SHORT = 6.0  # s, length of rendered test clips
PROBE = 8.0  # s, length of the clips that probe annotations against media
TRIM = 0.15  # s, trimmed off both ends of an interval before looking at the media
COLOUR_TOLERANCE = 60.0  # RGB distance that still counts as the sprite's colour


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames (N, H, W, 3) RGB and the audio (M,) of an mp4, decoded with PyAV."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    return frames, audio


def overlaps(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# ---- classes -------------------------------------------------------------------------------


def test_classes_share_cues_pairwise_but_are_unique_jointly():
    assert len(CLASSES) >= 16
    assert [c.label_id for c in CLASSES] == list(range(len(CLASSES)))
    assert len({c.name for c in CLASSES}) == len(CLASSES)
    assert len({(c.colour, c.shape) for c in CLASSES}) == len(CLASSES)
    assert len({(c.pitch, c.timbre, c.rhythm, c.rate) for c in CLASSES}) == len(CLASSES)
    for cue in ("colour", "shape", "pitch"):
        values = [getattr(c, cue) for c in CLASSES]
        assert all(values.count(v) == 2 for v in values), cue  # each cue is shared by a pair
    for clutter in CLUTTER_COLOURS:
        for cls in CLASSES:
            assert np.linalg.norm(np.subtract(clutter, cls.rgb)) > 100


# ---- scenarios -----------------------------------------------------------------------------


def test_scenario_is_deterministic_and_events_are_intersections():
    for index in range(50):
        scenario = sample_scenario(5, index)
        assert scenario == sample_scenario(5, index)
        assert scenario.video_id == f"synth_train_5_{index:05d}"
        assert scenario.events == intersect(scenario.visible, scenario.audible)
        assert scenario.events
        for start, end, label_id in scenario.events + scenario.visible + scenario.audible:
            assert 0 <= start < end <= scenario.duration
            assert end - start >= MIN_EVENT
            assert 0 <= label_id < len(CLASSES)
        for intervals in (scenario.visible, scenario.audible):  # one class: far apart
            for i, a in enumerate(intervals):
                for b in intervals[i + 1 :]:
                    assert a[2] != b[2] or max(b[0] - a[1], a[0] - b[1]) >= MARGIN
    other = sample_scenario(5, 0, split="test")
    assert other.video_id == "synth_test_5_00000"
    assert other.events != sample_scenario(5, 0).events  # splits differ in content, not only ids
    assert sample_scenario(5, 0, duration=SHORT).duration == SHORT


def test_statistics_follow_unav100():
    scenarios = [sample_scenario(2023, index) for index in range(2000)]
    durations = np.array([s.duration for s in scenarios])
    counts = np.array([len(s.events) for s in scenarios])
    lengths = np.array([e - s for sc in scenarios for s, e, _ in sc.events])
    assert 10.0 <= durations.min() and durations.max() <= 60.0
    assert 38.0 <= durations.mean() <= 46.0
    assert np.mean((durations >= 38) & (durations <= 52)) > 0.6
    assert 0.35 <= np.mean(counts == 1) <= 0.47
    assert 0.15 <= np.mean(counts == 2) <= 0.25
    assert 0.04 <= np.mean(counts >= 7) <= 0.12
    assert 2.2 <= counts.mean() <= 3.4
    assert np.median(lengths) < 5.0 and lengths.min() >= MIN_EVENT
    histogram = np.histogram(lengths, bins=np.arange(0, 62, 2))[0]
    assert histogram.argmax() == 0  # the 0-2 s bin is the largest
    long_share = np.mean([e - s >= 0.75 * sc.duration for sc in scenarios for s, e, _ in sc.events])
    assert 0.03 <= long_share <= 0.15  # the bump of events that cover most of the clip
    inner = [t for sc in scenarios for s, e, _ in sc.events for t in (s, e) if 0 < t < sc.duration]
    assert np.mean(np.isclose(np.mod(np.array(inner) * 4, 1.0), 0.0, atol=1e-6)) < 0.02
    # Distractors, partial overlaps and multi-label overlaps are common, not corner cases.
    seen_only = np.mean([len(s.visible) > len(s.events) for s in scenarios])
    heard_only = np.mean([len(s.audible) > len(s.events) for s in scenarios])
    assert seen_only > 0.6 and heard_only > 0.6
    partial = np.mean(
        [
            (s, e) not in [v[:2] for v in sc.visible if v[2] == k and v[0] <= s and e <= v[1]]
            or (s, e) not in [a[:2] for a in sc.audible if a[2] == k and a[0] <= s and e <= a[1]]
            for sc in scenarios
            for s, e, k in sc.events
        ]
    )
    assert 0.15 <= partial <= 0.5  # seen and heard for different spans: the event is the overlap
    multi = np.mean(
        [
            any(
                overlaps(a, b) and a[2] != b[2]
                for i, a in enumerate(s.events)
                for b in s.events[i + 1 :]
            )
            for s in scenarios
        ]
    )
    assert multi > 0.2


# ---- rendering -----------------------------------------------------------------------------


def test_rendering_is_random_access():
    scenario = sample_scenario(9, 4, duration=SHORT)
    frames = list(render_frames(scenario))
    assert len(frames) == SHORT * FPS
    assert [t for t, _ in frames[:3]] == [0.0, 1 / FPS, 2 / FPS]
    t, frame = frames[37]
    assert frame.shape == (FRAME_SIZE, FRAME_SIZE, 3) and frame.dtype == np.uint8
    assert np.array_equal(render_frame(scenario, t), frame)
    audio = render_audio(scenario)
    assert audio.dtype == np.float32 and audio.shape == (SHORT * SAMPLE_RATE,)
    assert np.abs(audio).max() <= 1.0
    bounds = [0.0, 0.37, 1.0, 2.9, 4.5, SHORT]
    chunks = [
        render_audio(scenario, start=a, end=b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert np.array_equal(np.concatenate(chunks), audio)


def test_written_clip_is_deterministic_and_readable(tmp_path):
    scenario = sample_scenario(3, 1, duration=SHORT)
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_clip(scenario, first)
    write_clip(sample_scenario(3, 1, duration=SHORT), second)
    frames, audio = decode(first)
    again_frames, again_audio = decode(second)
    assert np.array_equal(frames, again_frames) and np.array_equal(audio, again_audio)
    assert json.dumps(annotation_entry(scenario)) == json.dumps(
        annotation_entry(sample_scenario(3, 1, duration=SHORT))
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temp files left

    with av.open(str(first)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == {"libx264": "h264", "mpeg4": "mpeg4"}[video_codec()]
        assert video.time_base == Fraction(1, FPS)
        assert (video.width, video.height) == (FRAME_SIZE, FRAME_SIZE)
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (sound.codec_context.name, sound.rate, sound.channels) == ("aac", SAMPLE_RATE, 1)
        assert [f.pts for f in container.decode(video=0)] == list(range(round(SHORT * FPS)))
    # AAC pads its last frame: the decoded track may be up to 1024 samples longer.
    assert SHORT * SAMPLE_RATE <= len(audio) < SHORT * SAMPLE_RATE + 1024
    rendered = render_audio(scenario)
    assert np.corrcoef(audio[: len(rendered)], rendered)[0, 1] > 0.99
    reference = np.stack([f for _, f in render_frames(scenario)]).astype(float)
    assert np.abs(frames - reference).mean() < 8.0

    capture = cv2.VideoCapture(str(first))
    read = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        read.append(bgr[..., ::-1])
    capture.release()
    assert len(read) == len(frames)
    assert np.abs(np.stack(read).astype(float) - frames).mean() < 2.0


# ---- annotations agree with the media ------------------------------------------------------


def probe(seed: int) -> tuple[Scenario, tuple, tuple, tuple]:
    """A short clip with an event, a visible-only and an audible-only interval (>= 1.2 s each).

    The visible-only interval overlaps no sound of its pitch; the audible-only one overlaps no
    sprite of its colour, so the absence of the other cue is the class's own doing.
    """
    for index in range(500):
        scenario = sample_scenario(seed, index, duration=PROBE)

        def long(interval: tuple) -> bool:
            return interval[1] - interval[0] >= 1.2

        events = [e for e in scenario.events if long(e)]
        seen = [
            v
            for v in scenario.visible
            if long(v)
            and not any(
                overlaps(v, a) and CLASSES[a[2]].pitch == CLASSES[v[2]].pitch
                for a in scenario.audible
            )
        ]
        heard = [
            a
            for a in scenario.audible
            if long(a)
            and not any(
                overlaps(a, v) and CLASSES[v[2]].colour == CLASSES[a[2]].colour
                for v in scenario.visible
            )
        ]
        if events and seen and heard:
            return scenario, events[0], seen[0], heard[0]
    raise AssertionError(f"no probe clip for seed {seed}")


def pitch_prominence(audio: np.ndarray, start: float, end: float, pitch: float) -> float:
    """Power within 3% of ``pitch`` over the median power of its neighbourhood (0.7-1.4 x)."""
    x = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    ratio = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE) / pitch
    floor = np.median(power[(ratio > 0.7) & (ratio < 1.4) & (np.abs(ratio - 1) > 0.12)])
    return float(power[np.abs(ratio - 1) < 0.03].mean() / floor)


def frame_indices(start: float, end: float) -> range:
    return range(int(np.ceil((start + TRIM) * FPS)), int((end - TRIM) * FPS))


def shape_coverage(frames: np.ndarray, scenario: Scenario, interval: tuple) -> float:
    """Median share of the sprite's expected core pixels that show its colour."""
    start, end, label_id = interval
    sprite = next(
        s for s in scenario.sprites if s.label_id == label_id and s.start <= start < s.end
    )
    shares = []
    for k in frame_indices(start, end):
        x, y, radius, step = sprite_pose(sprite, k / FPS)
        core = _mask(sprite.shape, radius, step)[..., 0] > 0.9
        ys, xs = np.nonzero(core)
        half = core.shape[0] // 2
        pixels = frames[k][ys + y - half, xs + x - half].astype(float)
        shares.append(np.mean(np.linalg.norm(pixels - sprite.colour, axis=-1) < COLOUR_TOLERANCE))
    return float(np.median(shares))


def colour_pixels(frames: np.ndarray, interval: tuple) -> float:
    """Median count of pixels near the class colour over the interval's frames."""
    start, end, label_id = interval
    rgb = np.array(CLASSES[label_id].rgb, float)
    counts = [
        np.sum(np.linalg.norm(frames[k].astype(float) - rgb, axis=-1) < COLOUR_TOLERANCE)
        for k in frame_indices(start, end)
    ]
    return float(np.median(counts))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annotations_agree_with_rendered_media(tmp_path, seed):
    scenario, event, seen_only, heard_only = probe(seed)
    path = tmp_path / "probe.mp4"
    write_clip(scenario, path)
    frames, audio = decode(path)

    def prominence(interval: tuple) -> float:
        start, end, label_id = interval
        return pitch_prominence(audio, start + TRIM, end - TRIM, CLASSES[label_id].pitch)

    # Inside an event the class is seen (its shape in its colour where it should be) and heard.
    assert shape_coverage(frames, scenario, event) > 0.6
    assert prominence(event) > 30.0
    # Visible but silent: the shape is there, its pitch is not.
    assert shape_coverage(frames, scenario, seen_only) > 0.6
    assert prominence(seen_only) < 15.0
    # Audible but unseen: the pitch is there, its colour is not.
    assert prominence(heard_only) > 30.0
    assert colour_pixels(frames, heard_only) <= 3


# ---- dataset and CLI -----------------------------------------------------------------------


def test_cli_renders_merges_and_is_deterministic_across_workers(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--videos", "2", "--seed", "4", "--duration", "3"]
    assert main(["--out", str(one), *args]) == 0
    assert "x real time" in capsys.readouterr().out
    assert main(["--out", str(two), *args, "--workers", "2"]) == 0
    assert (one / "annotations.json").read_bytes() == (two / "annotations.json").read_bytes()
    for name in ("synth_train_4_00000.mp4", "synth_train_4_00001.mp4"):
        frames, audio = decode(one / "videos" / name)
        other_frames, other_audio = decode(two / "videos" / name)
        assert np.array_equal(frames, other_frames) and np.array_equal(audio, other_audio)

    assert main(["--out", str(one), *args[2:], "--videos", "1", "--split", "test"]) == 0
    database = json.loads((one / "annotations.json").read_text())["database"]
    stems = sorted(p.stem for p in (one / "videos").glob("*.mp4"))
    assert (
        sorted(database)
        == stems
        == [
            "synth_test_4_00000",
            "synth_train_4_00000",
            "synth_train_4_00001",
        ]
    )
    entry = database["synth_test_4_00000"]
    assert entry["subset"] == "test" and entry["fps"] == FPS
    assert database["synth_train_4_00000"]["subset"] == "train"
    assert database["synth_train_4_00000"]["duration"] == 3.0
    scenario = sample_scenario(4, 0, 3.0, split="test")
    assert entry == json.loads(json.dumps(annotation_entry(scenario)))
    for item in entry["annotations"]:
        (start, end), label_id = item["segment"], item["label_id"]
        assert item["label"] == CLASSES[label_id].name
        for presence in (entry["visible"], entry["audible"]):
            assert any(
                p["label_id"] == label_id and p["segment"][0] <= start and end <= p["segment"][1]
                for p in presence
            )
    assert not list(one.glob(".*")) and not list((one / "videos").glob(".*"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--videos", "0"],
        ["--videos", "1", "--seed", "-1"],
        ["--videos", "1", "--workers", "0"],
        ["--videos", "1", "--split", "bad/name"],
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    assert "loco-synth: error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_invalid_annotations_and_unwritable_folders(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "annotations.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(folder), "--videos", "1", "--duration", "2"])
    assert exit_info.value.code == 2
    assert "loco-synth: error:" in capsys.readouterr().err
    assert (folder / "annotations.json").read_text() == "{not json"
    assert sorted(p.name for p in folder.iterdir()) == ["annotations.json"]

    (folder / "annotations.json").write_text('{"results": {}}')
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(folder), "--videos", "1", "--duration", "2"])
    assert exit_info.value.code == 2

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(blocker / "sub"), "--videos", "1", "--duration", "2"])
    assert exit_info.value.code == 2
    assert "loco-synth: error:" in capsys.readouterr().err


def test_the_default_model_build_renders_what_its_work_folder_lacks(tmp_path):
    """``train.default_model.render`` counts the regular and the long train clips apart (by
    their ids' seed), renders only what is missing, and gives the long clips their length."""
    from train.default_model import render

    counts = {"train": 1, "validation": 0, "test": 0}
    assert render(tmp_path, counts, long_clips=1, long_duration=3.0) == 2
    assert render(tmp_path, counts, long_clips=1, long_duration=3.0) == 0
    assert render(tmp_path, {**counts, "train": 2}) == 1  # a regular one more, no long one
    database = json.loads((tmp_path / "annotations.json").read_text())["database"]
    assert sorted(database) == ["synth_train_1_00000", "synth_train_1_00001", "synth_train_7_00000"]
    assert database["synth_train_7_00000"]["duration"] == pytest.approx(3.0)
    assert database["synth_train_1_00000"]["duration"] > 3.0
