"""Bad input gets a clear answer (the README's table of bad inputs, one test a row).

Detector rows first (the default model on a synthetic scene, or the tiny model where only the
plumbing matters), then the command-line tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from loco_stream.cli.eval import main as eval_main
from loco_stream.model_dir import ModelDir
from loco_stream.sources.base import AudioBlock, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.detector import Detector
from loco_stream.stream.output import JsonlWriter
from loco_stream.stream.stitch import Event
from loco_stream.stream.timeline import StreamStalled
from tests.media import make_clip
from tests.planted import make_planted_dataset, planted_config_overrides
from tests.test_stream_support import (
    assert_well_formed,
    finals,
    real_model_dir,
    tiny_model_dir,
    tiou,
)
from train.__main__ import main as train_main

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
SCENE_SEED = 334  # a demo scenario with two clear events inside its first 20 s
SCENE_SECONDS = 20.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelDir:
    return ModelDir(tiny_model_dir(tmp_path_factory), threads=1)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> ModelDir:
    return ModelDir(real_model_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def scene_items() -> list:
    """20 s of a demo scenario: 16 fps frames and 0.25-s blocks of 16 kHz audio."""
    return list(DemoSource(seed=SCENE_SEED, duration=SCENE_SECONDS, realtime=False))


def detect(model: ModelDir, items: list, shift: float = 0.0, audio=None) -> tuple[list, Detector]:
    """Push ``items`` with their times shifted by ``shift`` (audio through ``audio(block)``, a
    function returning (samples, sample_rate)); returns every event and the closed detector."""
    events: list[Event] = []
    detector = Detector(model, on_event=events.append)
    for item in items:
        if isinstance(item, VideoFrame):
            detector.push_frame(item.image, item.t + shift)
        else:
            samples, rate = (item.samples, 16000) if audio is None else audio(item)
            detector.push_audio(samples, item.t + shift, sample_rate=rate)
    detector.close()
    return events, detector


@pytest.fixture(scope="module")
def reference(real: ModelDir, scene_items: list) -> list[Event]:
    events, _ = detect(real, scene_items)
    assert len(finals(events)) >= 2, "the scene's two events are the reference"
    return finals(events)


def same_events(events: list[Event], reference: list[Event]) -> bool:
    mine = finals(events)
    return len(mine) == len(reference) and all(
        a.label_id == b.label_id and tiou((a.start, a.end), (b.start, b.end)) > 0.9
        for a, b in zip(mine, reference, strict=True)
    )


# ---- Detector: samples ----


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_audio_with_a_non_finite_sample_is_refused(tiny: ModelDir, bad: float) -> None:
    detector = Detector(tiny)
    samples = np.zeros(4000, np.float32)
    samples[1234] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        detector.push_audio(samples, 2.0)
    detector.push_audio(np.zeros(4000, np.float32), 2.0)  # the detector goes on
    assert detector.stats.audio_seconds == 0.25


def test_integer_pcm_is_scaled_by_its_dtype(
    real: ModelDir, scene_items: list, reference: list[Event]
) -> None:
    def int16(block: AudioBlock):
        return np.round(np.clip(block.samples, -1, 1) * 32767).astype(np.int16), 16000

    events, _ = detect(real, scene_items, audio=int16)
    assert same_events(events, reference), (finals(events), reference)


def test_unscaled_float_pcm_is_refused(tiny: ModelDir) -> None:
    samples = (np.sin(np.arange(4000) / 5) * 20000).astype(np.float32)  # int16 range as floats
    with pytest.raises(ValueError, match="unscaled integer"):
        Detector(tiny).push_audio(samples, 0.0)


def test_channels_first_stereo_is_refused(tiny: ModelDir) -> None:
    with pytest.raises(ValueError, match=r"looks like \(channels, N\)"):
        Detector(tiny).push_audio(np.zeros((2, 4000), np.float32), 0.0)


def test_audio_at_one_rate_declared_as_another_is_refused(tiny: ModelDir) -> None:
    """44.1 kHz blocks pushed with the default rate (16 kHz): their timestamps say otherwise."""
    detector = Detector(tiny)
    block = np.zeros(2756, np.float32)  # 1/16 s at 44.1 kHz
    with pytest.raises(ValueError, match=r"declared at 16000 Hz.*44100 Hz"):
        for k in range(16 * 10):
            detector.push_audio(block, k / 16)
    refused_at = detector.stats.audio_seconds
    with pytest.raises(ValueError, match="declared at 16000 Hz"):  # and so on, at that rate
        detector.push_audio(block, 10.0)
    detector.push_audio(block, 10.0, sample_rate=44100)  # the right rate is taken
    assert detector.stats.audio_seconds > refused_at


def test_a_rate_that_agrees_with_jittery_timestamps_and_a_pause_is_accepted(
    tiny: ModelDir,
) -> None:
    detector = Detector(tiny)
    rng = np.random.default_rng(0)
    t = 0.0
    for k in range(16 * 12):
        detector.push_audio(np.zeros(3000, np.float32), t + rng.uniform(-0.01, 0.01), 48000)
        t += 1 / 16 + (2.0 if k == 50 else 0.0)  # a 2-s pause once
    assert detector.stats.audio_seconds > 11


def test_an_empty_frame_and_a_nan_time_are_refused(tiny: ModelDir) -> None:
    detector = Detector(tiny)
    with pytest.raises(ValueError, match="must have pixels"):
        detector.push_frame(np.zeros((0, 0, 3), np.uint8), 0.0)
    for bad in (np.nan, np.inf, "1.0", None):
        with pytest.raises(ValueError, match="finite seconds"):
            detector.push_frame(np.zeros((8, 8, 3), np.uint8), bad)
        with pytest.raises(ValueError, match="finite seconds"):
            detector.push_audio(np.zeros(160, np.float32), bad)
    assert detector.stats.frames == 0 and detector.stats.audio_seconds == 0


# ---- Detector: times ----


@pytest.mark.parametrize("shift", [-100.0, 1.7e9])  # all negative; a Unix-time clock
def test_a_stream_may_start_at_any_clock_value(
    real: ModelDir, scene_items: list, reference: list[Event], shift: float
) -> None:
    events, detector = detect(real, scene_items, shift=shift)
    assert detector.origin == shift
    assert same_events(events, reference), (finals(events), reference)


def test_times_that_go_back_are_dropped_counted_and_warned_once(
    tiny: ModelDir, scene_items: list
) -> None:
    detector = Detector(tiny)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for item in scene_items:
            back = 3.0 if 8.0 <= item.t < 9.0 else 0.0  # one second of the clock 3 s late
            if isinstance(item, VideoFrame):
                detector.push_frame(item.image, item.t - back)
            else:
                detector.push_audio(item.samples, item.t - back)
    detector.close()
    went_back = [w for w in caught if "clock went backwards" in str(w.message)]
    assert len(went_back) == 1, [str(w.message) for w in caught]
    late = sum(8.0 <= item.t < 9.0 for item in scene_items)  # that second's frames and blocks
    assert detector.stats.clock_regressions == late
    assert detector.stats.steps == SCENE_SECONDS * 4  # the stream stays on its clock


def test_a_clock_jump_of_an_hour_restarts_the_stream_without_computing_the_gap(
    real: ModelDir, scene_items: list, reference: list[Event]
) -> None:
    """The scene, then the same scene an hour later: the same events twice, nothing between."""
    events: list[Event] = []
    detector = Detector(real, on_event=events.append)
    for shift in (0.0, 3600.0):
        for item in scene_items:
            if isinstance(item, VideoFrame):
                detector.push_frame(item.image, item.t + shift)
            else:
                detector.push_audio(item.samples, item.t + shift)
    detector.close()
    stats = detector.stats
    assert stats.restarts == 1 and stats.skipped_seconds == pytest.approx(3600 - SCENE_SECONDS)
    assert stats.steps == 2 * SCENE_SECONDS * 4 and stats.windows <= 2 * (SCENE_SECONDS + 1)
    assert_well_formed(events)
    first = [e for e in finals(events) if e.end <= SCENE_SECONDS]
    second = [e for e in finals(events) if e.start >= 3600]
    assert len(first) + len(second) == len(finals(events))  # nothing inside the gap
    assert same_events(first, reference)
    assert [e.label_id for e in second] == [e.label_id for e in reference]


# ---- Detector: bounded memory ----


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.parametrize("only", ["video", "audio"])
def test_one_modality_alone_is_buffered_only_to_a_bound_then_reported(
    tiny: ModelDir, only: str
) -> None:
    """10 minutes of frames and no audio (or the reverse): a stall is reported once, and memory
    stops growing (before: every frame or sample was kept, 890 MB for 30 minutes of frames)."""
    detector = Detector(tiny)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, 4000).astype(np.float32)
    stalls, rss = [], {}
    for k in range(600 * 16):
        t = k / 16
        try:
            if only == "video":
                detector.push_frame(image, t)
            elif k % 4 == 0:
                detector.push_audio(noise, t)
        except StreamStalled as stall:
            stalls.append((t, str(stall)))
        if k == 120 * 16:
            rss["2 min"] = rss_bytes()
    rss["10 min"] = rss_bytes()
    missing = "audio" if only == "video" else "video"
    assert len(stalls) == 1 and stalls[0][0] == pytest.approx(30.0, abs=0.3), stalls
    assert f"no {missing}" in stalls[0][1]
    assert rss["10 min"] - rss["2 min"] < 16 << 20, rss  # before: 30 MB (audio), 200 MB (video)
    assert detector.stats.stalls > 10 and detector.stats.steps == 0


# ---- Detector: settings ----


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"hop": 0}, "between 1 and the window"),
        ({"hop": 33}, "between 1 and the window"),  # the tiny model's window is 32 steps
        ({"hop": 2.5}, "whole number"),
        ({"threshold": 1.5}, "between 0 and 1"),
        ({"threshold": float("nan")}, "between 0 and 1"),
    ],
)
def test_hop_and_threshold_are_checked(tiny: ModelDir, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detector(tiny, **settings)


# ---- loco-stream ----

STREAM = [sys.executable, "-m", "loco_stream.cli.stream"]
DETECT = [sys.executable, "-m", "loco_stream.cli.detect"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def one_error_line(done: subprocess.CompletedProcess, prog: str, status: int, expected: str):
    assert done.returncode == status, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: ") and expected in last, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_second_writer_of_one_output_file_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", audio_rate=16000)
    output = tmp_path / "events.jsonl"
    with JsonlWriter(output) as first:
        first.write({"type": "stats", "frames": 1})
        args = ["--input", str(clip), "--model", str(tiny_dir), "--output", str(output)]
        done = subprocess.run(STREAM + args, capture_output=True, text=True, timeout=60)
        one_error_line(done, "loco-stream", 1, "being written by another process")
        first.write({"type": "stats", "frames": 2})
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert lines == [{"type": "stats", "frames": 1}, {"type": "stats", "frames": 2}]


@pytest.mark.parametrize(
    ("case", "status", "expected"),
    [
        ("short clip", 1, "nothing to detect"),
        ("folder", 1, "is a folder"),
        ("duration inf", 2, "--duration must be a finite number"),
        ("duration nan", 2, "--duration must be a finite number"),
        ("hop past the window", 2, "longer than the model's window (32 steps)"),
    ],
)
def test_loco_stream_says_why(
    tiny_dir: Path, tmp_path: Path, case: str, status: int, expected: str
) -> None:
    args = ["--model", str(tiny_dir)]
    if case == "short clip":
        args += ["--input", str(make_clip(tmp_path / "short.mp4", duration=0.2, fps=10))]
    elif case == "folder":
        args += ["--input", str(tmp_path)]
    elif case.startswith("duration"):
        args += ["--demo", "--duration", case.split()[1]]
    else:
        args += ["--input", str(make_clip(tmp_path / "clip.mp4")), "--hop", "100000"]
    done = subprocess.run(STREAM + args, capture_output=True, text=True, timeout=60)
    one_error_line(done, "loco-stream", status, expected)


def test_a_file_whose_audio_stops_ends_with_the_stall_not_a_growing_buffer(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Video for 45 s, audio for 5 s: the stream stops 30 s after the audio did, with the
    events so far closed and written (before: every frame was buffered to the end)."""
    frames_ms = list(range(0, 45_000, 100))
    clip = make_clip(tmp_path / "clip.mp4", duration=5.0, video_pts_ms=frames_ms, size=(64, 48))
    output = tmp_path / "events.jsonl"
    args = ["--input", str(clip), "--model", str(tiny_dir), "--output", str(output)]
    done = subprocess.run(STREAM + args, capture_output=True, text=True, timeout=120)
    one_error_line(done, "loco-stream", 1, "the stream stalled: no audio after 4.9")
    assert "while video went on to 3" in done.stderr and "closed and written" in done.stderr
    stats = [json.loads(line) for line in output.read_text().splitlines()][-1]
    assert stats["type"] == "stats" and stats["stalls"] == 1 and stats["steps"] <= 20


# ---- loco-detect ----


def test_files_of_one_name_in_two_folders_keep_their_own_results(
    tiny_dir: Path, tmp_path: Path
) -> None:
    first = make_clip(mkdir(tmp_path / "a") / "clip.mp4", tone_hz=440.0)
    second = make_clip(mkdir(tmp_path / "b") / "clip.mp4", duration=3.0, tone_hz=880.0)
    other = make_clip(tmp_path / "other.mp4")
    output, plots = tmp_path / "results.json", tmp_path / "plots"
    args = [str(first), str(second), str(other), "--model", str(tiny_dir)]
    args += ["--output", str(output), "--plot", str(plots)]
    done = subprocess.run(DETECT + args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(output.read_text())["results"]
    assert sorted(results) == ["a/clip", "b/clip", "other"]
    assert sorted(p.name for p in plots.iterdir()) == ["a__clip.png", "b__clip.png", "other.png"]


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("missing folder", "does not exist; create it first"),
        ("a folder", "is a folder; give a file name"),
        ("read-only folder", "cannot write in"),
    ],
)
def test_an_unwritable_output_is_refused_before_any_decoding(
    tiny_dir: Path, tmp_path: Path, where: str, expected: str
) -> None:
    if where == "read-only folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: the case cannot be made here")
    output = {
        "missing folder": tmp_path / "no" / "results.json",
        "a folder": mkdir(tmp_path / "results.json"),
        "read-only folder": tmp_path / "locked" / "results.json",
    }[where]
    if where == "read-only folder":
        mkdir(output.parent).chmod(0o500)
    damaged = tmp_path / "damaged.mp4"  # would be reported as skipped if it were ever decoded
    damaged.write_bytes(b"not a video")
    args = [str(damaged), "--model", str(tiny_dir), "--output", str(output)]
    done = subprocess.run(DETECT + args, capture_output=True, text=True, timeout=60)
    one_error_line(done, "loco-detect", 2, expected)
    assert "skipped" not in done.stderr and not list(tmp_path.rglob("*.tmp"))


def test_the_cap_of_events_per_clip_is_a_flag_and_reaching_it_is_said(
    tiny_dir: Path, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", duration=6.0)
    counts = {}
    for cap in (3, None):
        output = tmp_path / f"results_{cap}.json"
        args = [str(clip), "--model", str(tiny_dir), "--output", str(output)]
        args += [] if cap is None else ["--max-events", str(cap)]
        done = subprocess.run(DETECT + args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        counts[cap] = len(json.loads(output.read_text())["results"]["clip"])
        if cap == 3:
            assert "reached the cap of 3 candidates per clip" in done.stderr, done.stderr
    assert counts[3] == 3 < counts[None] <= 100


# ---- loco-eval ----


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


GROUND_TRUTH = {
    "database": {
        "v1": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label_id": 0}]},
        "v2": {"subset": "test", "annotations": [{"segment": [2.0, 5.0], "label_id": 1}]},
    }
}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("negative time", "starts before 0 s"),
        ("empty results", "holds no predictions"),
        ("video without subset", "have no \"subset\" (first: 'v2')"),
    ],
)
def test_loco_eval_refuses_what_the_protocol_cannot_score(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str, expected: str
) -> None:
    truth = json.loads(json.dumps(GROUND_TRUTH))
    results = {"v1": [{"segment": [1.0, 3.0], "label_id": 0, "score": 0.9}]}
    if case == "negative time":
        results["v2"] = [{"segment": [-2.0, 5.0], "label_id": 1, "score": 0.8}]
    elif case == "empty results":
        results = {"v1": [], "v2": []}
    else:
        del truth["database"]["v2"]["subset"]
    args = ["--annotations", str(write_json(tmp_path / "gt.json", truth))]
    args += ["--predictions", str(write_json(tmp_path / "r.json", {"results": results}))]
    assert eval_main([*args, "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loco-eval: error: ") and expected in err and len(err.splitlines()) == 1


def test_loco_eval_warns_of_negative_scores_and_ranks_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    results = {  # logits: the true event ranks first all the same
        "v1": [{"segment": [1.0, 3.0], "label_id": 0, "score": -0.5}],
        "v2": [
            {"segment": [2.0, 5.0], "label_id": 1, "score": -1.0},
            {"segment": [0.0, 1.0], "label_id": 1, "score": -3.0},
        ],
    }
    args = ["--annotations", str(write_json(tmp_path / "gt.json", GROUND_TRUTH))]
    args += ["--predictions", str(write_json(tmp_path / "r.json", {"results": results}))]
    assert eval_main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["average"] == 100.0
    assert "loco-eval: warning:" in captured.err and "3 prediction(s) have negative" in captured.err


# ---- training ----


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, list[str]]:
    annotations = make_planted_dataset(tmp_path, {"train": 8, "validation": 2})
    overrides = planted_config_overrides(tmp_path, annotations)
    return tmp_path, [*overrides, "train.epochs=1", "train.val_every=1", "train.num_threads=1"]


def test_training_checks_every_feature_file_first_and_can_skip_the_missing(
    planted: tuple[Path, list[str]], capsys: pytest.CaptureFixture
) -> None:
    root, overrides = planted
    for index in (2, 5, 6):
        (root / "features" / f"train_{index:04d}_visual.npy").unlink()
    assert train_main(["--config", str(SMOKE), "--quiet", *overrides]) == 2
    err = capsys.readouterr().err
    assert "3 of 8 train videos have no usable features" in err, err
    assert "(first: train_0002, train_0005, train_0006;" in err and "skip_missing_features" in err
    assert not (root / "run").exists()  # stopped before the first step
    skip = [*overrides, "data.skip_missing_features=true"]
    assert train_main(["--config", str(SMOKE), "--quiet", *skip]) == 0
    assert "using the other 5 (data.skip_missing_features)" in capsys.readouterr().err
    metrics = [
        json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics[-1]["videos_without_features"] == 3 and (root / "run" / "best.pt").is_file()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs=0", "train.epochs must be at least 1, got 0"),
        ("train.lr=fast", "train.lr must be a number, got 'fast' (str)"),
        ("data.visual_files=[{vid}_visual.npy]", "the value is not valid YAML"),
    ],
)
def test_training_settings_get_one_clear_error(
    planted: tuple[Path, list[str]], capsys: pytest.CaptureFixture, override: str, expected: str
) -> None:
    root, overrides = planted
    assert train_main(["--config", str(SMOKE), "--quiet", *overrides, override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error: ") and expected in err and len(err.splitlines()) == 1
    assert "best checkpoint" not in capsys.readouterr().out
