"""The second sweep of bad inputs (docs/bad_inputs.md): a full disk, a failing callback, an
existing folder, values of the right kind but an impossible size, a missing extra.

Each test is a case of the sweep's table that failed before its fix; the sweep itself
(`benchmarks/sweep_bad_inputs.py`) runs every case as a user would.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loco_stream.bundle import CARD, DEFAULT_MODEL_DIR, ModelDirError, read_card
from loco_stream.cli import detect as detect_cli
from loco_stream.cli import detect_run
from loco_stream.cli import stream as stream_cli
from loco_stream.config import ConfigError, ModelConfig, load_config
from loco_stream.limits import LimitError, check
from loco_stream.sources.base import VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.sources.file import FileSource
from loco_stream.stream import output
from loco_stream.stream.detector import Detector
from loco_stream.stream.lane import StreamEvent
from loco_stream.stream.multi_detector import MultiDetector
from loco_stream.stream.stitch import Event, StitchConfig, Stitcher
from tests.media import make_clip
from tests.test_stitch import CLASSES, window_of
from tests.test_stream_support import tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", duration=6.0)


def disk_fills_after(monkeypatch: pytest.MonkeyPatch, whole: int) -> None:
    """The output's disk takes ``whole`` more writes, then half of one, then none."""
    real, calls = os.write, [0]

    def write(fd: int, data: memoryview) -> int:
        calls[0] += 1
        if calls[0] <= whole:
            return real(fd, data)
        if calls[0] == whole + 1:
            return real(fd, bytes(data[: len(data) // 2]))
        raise NO_SPACE

    monkeypatch.setattr(output.os, "write", write)


def assert_whole_lines(path: Path, count: int) -> None:
    text = path.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == count
    assert all(json.loads(line) for line in text.splitlines())


# ---- out of space while writing ----


def test_a_full_disk_leaves_only_whole_records_and_says_which_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    writer = output.JsonlWriter(path)
    writer.write({"n": 0})
    disk_fills_after(monkeypatch, 0)
    with pytest.raises(output.OutputFailed, match="No space left on device") as failed:
        writer.write({"n": 1, "padding": "x" * 100})  # half of it reaches the disk
    assert str(path) in str(failed.value) and "1 whole records" in str(failed.value)
    with pytest.raises(output.OutputFailed):  # and no later record is half-written either
        writer.write({"n": 2})
    writer.close()
    assert_whole_lines(path, 1)


def test_loco_stream_on_a_disk_that_fills_says_so_once_and_detection_goes_on(
    tiny_dir: Path, clip: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    events = tmp_path / "events.jsonl"
    disk_fills_after(monkeypatch, 2)
    argv = ["--input", str(clip), "--model", str(tiny_dir), "--output", str(events)]
    status = stream_cli.main([*argv, "--stats", "0.5"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.count("error: cannot write") == 1, captured.err
    assert "No space left on device; it keeps the 2 whole records" in captured.err
    assert "Traceback" not in captured.err
    assert "steps" in captured.out.splitlines()[-1]  # the stats after the end: it went on
    assert_whole_lines(events, 2)


def test_many_streams_on_a_disk_that_fills_keep_whole_lines_and_exit_1(
    tiny_dir: Path, clip: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "out"
    disk_fills_after(monkeypatch, 1)
    argv = ["--input", str(clip), "--input", str(clip), "--model", str(tiny_dir)]
    status = stream_cli.main([*argv, "--output-dir", str(folder)])
    captured = capsys.readouterr()
    assert status == 1 and "No space left on device" in captured.err
    assert "2 streams: 2 ended" in captured.out  # detection went on for both
    for path in folder.glob("*.jsonl"):
        text = path.read_text()
        assert text == "" or all(json.loads(line) for line in text.splitlines())


def test_loco_detect_on_a_full_disk_keeps_the_earlier_file(
    tiny_dir: Path, clip: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    results = tmp_path / "results.json"
    results.write_text('{"results": {"earlier": []}}')

    def full(path: Path, data: dict) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".tmp")

    monkeypatch.setattr(detect_run, "write_json_atomically", full)
    status = detect_cli.main([str(clip), "--model", str(tiny_dir), "--output", str(results)])
    err = capsys.readouterr().err
    assert status == 1 and "No space left on device" in err and "Traceback" not in err
    assert json.loads(results.read_text()) == {"results": {"earlier": []}}


def test_loco_detect_that_detects_nothing_leaves_an_earlier_file_as_it_was(
    tmp_path: Path, capsys
) -> None:
    results = tmp_path / "results.json"
    results.write_text('{"results": {"earlier": []}}')
    status = detect_cli.main([str(tmp_path / "missing.mp4"), "--output", str(results)])
    assert status == 1 and "left as it was" in capsys.readouterr().err
    assert json.loads(results.read_text()) == {"results": {"earlier": []}}


# ---- one layer of limits ----


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "threads must be at least 1, got 0"),
        (10**6, "threads must be at most 256"),
        (2.5, "threads must be a whole number"),
        (True, "threads must be a whole number"),
    ],
)
def test_threads_are_checked_alike_by_the_api_and_the_cli(
    tiny_dir: Path, value: object, message: str, capsys
) -> None:
    with pytest.raises(LimitError, match=message):
        check("threads", value)
    with pytest.raises(ValueError, match=message):
        Detector(tiny_dir, threads=value)
    with pytest.raises(ValueError, match=message):
        MultiDetector(tiny_dir, threads=value)
    if isinstance(value, int) and not isinstance(value, bool):
        with pytest.raises(SystemExit) as stopped:
            stream_cli.main(["--demo", "--threads", str(value)])
        assert stopped.value.code == 2 and f"--{message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.embed_dim=1000000000000", "model.embed_dim must be at most 16384"),
        ("model.num_heads=0", "model.num_heads must be at least 1, got 0"),
        ("model.visual_dim=-3", "model.visual_dim must be at least 1"),
        ("decode.max_segments=0", "decode.max_segments must be at least 1"),
        ("train.batch_size=100000000", "train.batch_size must be at most"),
    ],
)
def test_impossible_sizes_in_a_config_are_refused_by_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "smoke.yaml", [override])


def test_loco_train_refuses_an_impossible_size_before_its_first_stage(
    tmp_path: Path, capsys
) -> None:
    from train.pipeline import main as train_main

    (tmp_path / "videos").mkdir()
    annotations = tmp_path / "a.json"
    annotations.write_text('{"database": {}}')
    argv = ["--videos", str(tmp_path / "videos"), "--annotations", str(annotations)]
    status = train_main([*argv, "--out", str(tmp_path / "m"), "model.embed_dim=1000000000000"])
    captured = capsys.readouterr()
    assert status == 2 and "model.embed_dim must be at most" in captured.err
    assert "[1/6]" not in captured.out  # no stage began


def test_loco_detect_checks_its_counts_with_the_shared_limits(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        detect_cli.main(["x.mp4", "--output", "r.json", "--workers", "100000"])
    assert stopped.value.code == 2
    assert "--workers must be at most 256, got 100000" in capsys.readouterr().err


def test_loco_stream_refuses_a_stats_period_that_is_not_a_period(capsys) -> None:
    for period in ("0", "nan", "-1"):
        with pytest.raises(SystemExit):
            stream_cli.main(["--demo", "--stats", period])
        assert "--stats (seconds of stream between stats) must be" in capsys.readouterr().err


# ---- types inside a model card ----


@pytest.mark.parametrize(
    ("where", "key", "value", "message"),
    [
        (("window",), "classes", "abc", "window.classes must be a list of class names"),
        (("window",), "window", "40", "window.window must be a whole number, got '40'"),
        (("window",), "step_seconds", "0.25", "window.step_seconds must be a number"),
        (("window", "model"), "embed_dim", "128", "window.model.embed_dim must be a whole"),
        (("window", "model"), "embed_dim", 10**12, "model.embed_dim must be at most"),
        (("window", "decode"), "max_segments", None, "max_segments must be a whole number"),
        (("extractors", "audio"), "feature_dim", "128", "feature_dim must be a whole number"),
        (("extractors", "audio", "step"), "sample_rate", 16000.5, "sample_rate must be a whole"),
    ],
)
def test_a_model_card_value_of_the_wrong_type_is_named(
    tmp_path: Path, where: tuple, key: str, value: object, message: str
) -> None:
    card = json.loads((DEFAULT_MODEL_DIR / CARD).read_text())
    section = card
    for part in where:
        section = section[part]
    section[key] = value
    (tmp_path / CARD).write_text(json.dumps(card))
    with pytest.raises(ModelDirError, match=message):
        read_card(tmp_path)


def test_the_packaged_card_and_a_default_model_config_still_read() -> None:
    assert read_card(DEFAULT_MODEL_DIR).window.classes
    ModelConfig()


# ---- nothing already there is destroyed ----


def test_export_refuses_a_folder_holding_a_model_of_other_weights(tmp_path: Path, capsys) -> None:
    from export.__main__ import main as export_main
    from export.job import replaced_work

    folder = tmp_path / "model"
    folder.mkdir()
    card = json.loads((DEFAULT_MODEL_DIR / CARD).read_text())
    card["files"]["loco.pt"]["sha256"] = "0" * 64
    (folder / CARD).write_text(json.dumps(card))
    before = (folder / CARD).read_text()
    status = export_main(["--checkpoint", str(DEFAULT_MODEL_DIR / "loco.pt"), "--out", str(folder)])
    assert status == 2 and "--force" in capsys.readouterr().err
    assert (folder / CARD).read_text() == before
    checkpoint = DEFAULT_MODEL_DIR / "loco.pt"
    assert replaced_work(DEFAULT_MODEL_DIR, checkpoint) is None  # a re-export of the same weights
    assert replaced_work(tmp_path / "new", checkpoint) is None
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "loco.onnx").write_bytes(b"someone's graph")
    assert "loco.onnx" in replaced_work(tmp_path / "graphs", checkpoint)


# ---- callbacks ----


def made_events(count: int) -> list[Event]:
    return [Event("end", k, "a", 0, float(k), k + 1.0, 0.9, k + 1.0) for k in range(count)]


def test_a_raising_on_event_costs_no_other_event_and_is_logged_with_its_event(
    tiny_dir: Path, caplog
) -> None:
    got: list[Event] = []

    def on_event(event: Event) -> None:
        if event.id == 1:
            raise RuntimeError("a bug in the caller")
        got.append(event)

    detector = Detector(tiny_dir, on_event=on_event)
    with caplog.at_level(logging.ERROR):
        detector._emit(made_events(4))  # one batch of events, as a window gives
    assert [e.id for e in got] == [0, 2, 3]
    assert detector.callback_errors == 1
    assert "a bug in the caller" in caplog.text and "id=1" in caplog.text
    detector.close()


def test_a_raising_on_event_stops_no_stream_of_a_multi_detector_and_close_does_not_raise(
    tiny_dir: Path, caplog
) -> None:
    got: list[StreamEvent] = []

    def on_event(item: StreamEvent) -> None:
        if item.stream == "a":
            raise RuntimeError("a bug in the caller")
        got.append(item)

    detector = MultiDetector(tiny_dir, on_event=on_event)
    detector.add_stream("a")
    detector.add_stream("b")
    with caplog.at_level(logging.ERROR):
        for event in made_events(3):
            detector._deliver(StreamEvent("a", event))
            detector._deliver(StreamEvent("b", event))
    detector.close()
    assert [item.event.id for item in got] == [0, 1, 2]
    assert detector.callback_errors == 3 and caplog.text.count("a bug in the caller") == 3


# ---- messages that name the right thing ----


def demo_audio(seconds: float = 12.0) -> list:
    items = DemoSource(seed=3, duration=seconds, realtime=False)
    return [item for item in items if not isinstance(item, VideoFrame)]


def test_a_whole_float_sample_rate_is_that_rate(tiny_dir: Path) -> None:
    detector = Detector(tiny_dir)
    for block in demo_audio(2.0):
        detector.push_audio(block.samples, block.t, sample_rate=16000.0)
    with pytest.raises(ValueError, match="whole number of Hz, got 16000.5"):
        detector.push_audio(np.zeros(100, np.float32), 9.0, sample_rate=16000.5)
    detector.close()


def test_audio_blocks_out_of_order_are_not_blamed_on_the_rate(tiny_dir: Path) -> None:
    blocks = demo_audio()
    random.Random(0).shuffle(blocks)
    detector = Detector(tiny_dir)
    with pytest.warns(RuntimeWarning, match="went backwards"):
        for block in blocks:
            detector.push_audio(block.samples, block.t)
    assert detector.stats.clock_regressions > 0
    detector.close()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_input_that_is_not_a_regular_file_is_named_so(tmp_path: Path, kind: str, capsys) -> None:
    path = Path("/dev/null")
    if kind == "fifo":
        path = tmp_path / "pipe.mp4"
        os.mkfifo(path)
    assert stream_cli.main(["--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert "is not a regular file (a device, a named pipe or a socket)" in err
    assert "does not exist" not in err


# ---- a missing extra ----


@pytest.mark.parametrize(
    ("module", "argv"),
    [("train.pipeline", ["loco-train", "--help"]), ("export", ["export", "--out", "x"])],
)
def test_a_missing_torch_is_one_line_naming_the_extra(module: str, argv: list[str]) -> None:
    code = (
        "import runpy, sys; sys.modules['torch'] = None; "
        f"sys.argv = {argv!r}; runpy.run_module({module!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{'loco-train' if module == 'train.pipeline' else 'python -m export'}: error: torch is "
        "not installed; it comes with the 'train' extra: pip install 'loco-stream[train]'"
    ]


# ---- noise ----


def test_a_damaged_clip_gets_one_warning_with_its_count(clip: Path, tmp_path: Path, caplog):
    data = bytearray(clip.read_bytes())
    third = len(data) // 3
    data[third : 2 * third : 97] = bytes(len(range(0, third, 97)))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = FileSource(damaged)
    with caplog.at_level(logging.WARNING):
        list(source)
    source.close()
    warned = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warned) == 1 and "skipped" in warned[0], caplog.text


def test_an_end_record_never_scores_under_the_threshold() -> None:
    """Confirmed at 0.8, then matched only by weaker candidates (0.2, over the support floor):
    the end record says the event's best score, not its last and weakest."""
    stitcher = Stitcher(CLASSES, StitchConfig(threshold=0.3))
    events: list[Event] = []
    for now in range(3, 12):
        score = 0.8 if now < 7 else 0.2
        events += stitcher.update(window_of([(2.0, float(now), 0, score)]), 0.0, now, False, now)
    events += stitcher.flush(12.0)
    ends = [e for e in events if e.type == "end"]
    assert ends and all(e.score >= 0.3 for e in ends), events
    assert ends[0].score == 0.8


def test_loco_detect_threshold_keeps_events_and_the_cap_note_says_what_is_kept(
    tiny_dir: Path, clip: Path, tmp_path: Path, capsys
) -> None:
    everything, strong = tmp_path / "all.json", tmp_path / "strong.json"
    argv = [str(clip), "--model", str(tiny_dir), "--max-events", "5"]
    assert detect_cli.main([*argv, "--output", str(everything)]) == 0
    note = capsys.readouterr().err
    assert "reached the cap of 5 candidates per clip" in note and "score 0.3 or more" in note
    scores = [e["score"] for e in json.loads(everything.read_text())["results"]["clip"]]
    cut = sorted(scores)[len(scores) // 2]
    assert detect_cli.main([*argv, "--output", str(strong), "--threshold", str(cut)]) == 0
    kept = [e["score"] for e in json.loads(strong.read_text())["results"]["clip"]]
    assert kept == [s for s in scores if s >= cut] and len(kept) < len(scores)


def test_warnings_of_loco_detect_workers_are_one_line_each(
    tiny_dir: Path, clip: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size * 6 // 10])
    command = [sys.executable, "-m", "loco_stream.cli.detect", str(truncated), str(clip)]
    command += ["--model", str(tiny_dir), "--output", str(tmp_path / "r.json"), "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "loco-detect: warning: media file" in done.stderr, done.stderr
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr
