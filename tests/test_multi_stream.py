"""Many streams in one process: the same records as one run per stream, batched graphs, failures
that stay with their stream, resuming without repeats, the stream list, and `MultiDetector`."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from media import make_clip

from loco_stream.bundle import BATCH_GRAPHS, DamagedFileError, read_bundle
from loco_stream.features.steps import Step
from loco_stream.model_dir import ModelDir
from loco_stream.sources import FileSource, MediaSource, SourceError
from loco_stream.sources.base import Item, VideoFrame
from loco_stream.stream import (
    Detector,
    MultiDetector,
    MultiStreamEngine,
    StitchConfig,
    StreamEngine,
    StreamSpec,
)
from loco_stream.stream import batched as batched_module
from loco_stream.stream.batched import BatchedModel
from loco_stream.stream.stream_list import StreamListError, read_stream_list, unique_names
from loco_stream.synth import write_clip
from tests.test_stream_support import demo_scenario, real_model_dir, tiou

COMMAND = [sys.executable, "-m", "loco_stream.cli.stream"]
LOW = 0.02  # the random tiny model's scores are small: at this threshold it emits dozens of records
DEMO_SEEDS = (334, 335, 336)  # demo scenarios with events in their first 12 s
DEMO_SECONDS = 12.0


def single_run(model: ModelDir, clip: Path, threshold: float = LOW) -> list[dict]:
    """The event records of one `StreamEngine` over ``clip`` (what `loco-stream --input` runs)."""
    engine = StreamEngine(model, StitchConfig(threshold=threshold))
    events = []
    with FileSource(clip) as source:
        engine.run(source, events.append)
    return [event.to_record() for event in events]


def multi_run(engine: MultiStreamEngine, specs: list[StreamSpec]):
    """(records by stream without the stream key, reports by stream) of one `run`."""
    records: dict[str, list[dict]] = {spec.name: [] for spec in specs}

    def on_event(item) -> None:
        record = item.to_record()
        assert record.pop("stream") == item.stream
        records[item.stream].append(record)

    reports = engine.run(specs, on_event)
    return records, {report.name: report for report in reports}


def records_by_stream(path: Path) -> dict[str, list[dict]]:
    """The start/end records of a JSON-lines file, by their stream, without the stream key."""
    streams: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] in ("start", "end"):
            streams.setdefault(record.pop("stream"), []).append(record)
    return streams


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three different clips: other tones, lengths, frame rates, sizes and audio rates."""
    folder = tmp_path_factory.mktemp("clips")
    return [
        make_clip(folder / "a.mp4", duration=6.0, fps=16, tone_hz=440.0, audio_rate=16000),
        make_clip(folder / "b.mp4", duration=7.0, fps=12, tone_hz=880.0, size=(96, 64)),
        make_clip(folder / "c.mp4", duration=5.0, fps=16, tone_hz=220.0, audio_rate=22050),
    ]


@pytest.fixture(scope="module")
def singles(batched_dir: Path, clips: list[Path]) -> dict[str, list[dict]]:
    """Each clip's records from a single-stream run on the batch-1 graphs."""
    with ModelDir(batched_dir, threads=1) as model:
        return {clip.stem: single_run(model, clip) for clip in clips}


def specs_of(clips: list[Path], **options) -> list[StreamSpec]:
    return [StreamSpec(clip.stem, input=clip, threshold=LOW, **options) for clip in clips]


# ---- batched graphs ----


def test_export_batch_writes_verified_graphs_with_a_free_batch_axis(
    batched_dir: Path, tmp_path: Path
) -> None:
    card = read_bundle(batched_dir)  # every file, the batched ones included, verified
    for name in BATCH_GRAPHS.values():
        assert all(shape[0] is None for shape, _ in card.files[name].outputs.values())
    damaged = tmp_path / "model"
    shutil.copytree(batched_dir, damaged)
    graph = damaged / BATCH_GRAPHS["window"]
    graph.write_bytes(graph.read_bytes()[:-100])
    with pytest.raises(DamagedFileError, match="loco_batch.onnx"):
        BatchedModel(damaged)


def test_a_batch_gives_each_row_what_it_gives_alone(batched_dir: Path) -> None:
    rng = np.random.default_rng(0)
    with BatchedModel(batched_dir, threads=1) as model:
        assert model.batched
        info, spec = model.info, model.spec
        steps = [
            Step(
                i,
                (0.3 * rng.standard_normal(spec.samples_per_window)).astype(np.float32),
                rng.integers(
                    0, 256, (spec.frames_per_step, spec.frame_size, spec.frame_size, 3)
                ).astype(np.uint8),
            )
            for i in range(5)
        ]
        visual, audio = model.features(steps)  # (5, Dv), (5, Da)
        for row, step in enumerate(steps):
            alone = model.step_features(step)
            assert np.array_equal(visual[row], alone[0]) and np.array_equal(audio[row], alone[1])
            batch1 = model.model.step_features(step)  # the batch-1 graphs
            assert np.allclose(visual[row], batch1[0], atol=1e-5)
        t = info.window
        inputs = [
            rng.standard_normal((4, t, info.visual_dim), dtype=np.float32),
            rng.standard_normal((4, t, info.audio_dim), dtype=np.float32),
            np.ones((4, t), np.float32),
        ]
        inputs[2][1, t // 3 :] = 0  # a stream's first windows are padded
        scores, segments = model.windows(*inputs)
        for row in range(4):
            one = model.run_window(*(x[row : row + 1] for x in inputs))
            assert np.array_equal(scores[row], one[0][0])
            assert np.array_equal(segments[row], one[1][0])


def test_without_batched_graphs_a_warning_and_a_call_per_stream(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), BatchedModel(tiny_model_dir) as model:
        assert not model.batched
    assert "python -m export --batch" in caplog.text and "one call per stream" in caplog.text


# ---- many streams, one process ----


def test_n_streams_in_one_process_give_the_records_of_n_single_runs(
    batched_dir: Path, clips: list[Path], singles: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows_per_call: list[int] = []
    real_run_rows = batched_module.run_rows

    def counting(graph, inputs, *options):
        rows_per_call.append(len(next(iter(inputs.values()))))
        return real_run_rows(graph, inputs, *options)

    monkeypatch.setattr(batched_module, "run_rows", counting)
    with MultiStreamEngine(batched_dir, threads=2) as engine:  # a batch: 2 chunks at once
        assert engine.model.batched
        records, reports = multi_run(engine, specs_of(clips))
    assert max(rows_per_call) > 1  # steps and windows of several streams went in one call
    for clip in clips:
        assert len(singles[clip.stem]) >= 5, "too few records to compare"
        assert records[clip.stem] == singles[clip.stem]
        report = reports[clip.stem]
        assert report.error is None and report.stats.events == sum(
            r["type"] == "end" for r in singles[clip.stem]
        )


def test_a_hop_off_the_step_graph_batches_the_window_graph_across_streams(
    batched_dir: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2-step hop is no multiple of the step graph's 4: the streams run the window graph, their
    windows batched in one call, and each gives what it gives alone at that hop."""
    window_rows: list[int] = []
    real_run_rows = batched_module.run_rows

    def counting(graph, inputs, *options):
        if "mask" in inputs:  # the window graph's call
            window_rows.append(len(inputs["mask"]))
        return real_run_rows(graph, inputs, *options)

    with ModelDir(batched_dir, threads=1) as model:
        alone = {}
        for clip in clips:
            engine = StreamEngine(model, StitchConfig(threshold=LOW), hop=2)
            assert engine.step_graph is None
            events = []
            with FileSource(clip) as source:
                engine.run(source, events.append)
            alone[clip.stem] = [event.to_record() for event in events]
    monkeypatch.setattr(batched_module, "run_rows", counting)
    with MultiStreamEngine(batched_dir, threads=1, hop=2) as engine:
        records, _ = multi_run(engine, specs_of(clips))
    assert max(window_rows) > 1  # windows of several streams in one call
    assert records == alone and sum(map(len, alone.values())) > 0


class _StoppingSource(MediaSource):
    """A file's items until ``stop_at`` seconds, then a `SourceError` (a camera that stopped)."""

    def __init__(self, path: Path, stop_at: float) -> None:
        super().__init__()
        self._file, self.stop_at = FileSource(path), stop_at
        self.description, self.has_video, self.has_audio = "a camera that stops", True, True

    def __iter__(self) -> Iterator[Item]:
        for item in self._file:
            if item.t >= self.stop_at:
                raise SourceError("the camera stopped sending frames")
            yield item

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class _StoppingSpec(StreamSpec):
    def open(self) -> MediaSource:
        return _StoppingSource(self.input, 3.0)


@pytest.mark.filterwarnings("ignore:media file .* seems truncated")
def test_a_stream_that_fails_is_closed_and_reported_while_the_others_go_on(
    batched_dir: Path, clips: list[Path], singles: dict, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 500)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clips[1].read_bytes()[: clips[1].stat().st_size // 2])
    failing = _StoppingSpec("stops", input=clips[0], threshold=LOW)
    specs = [
        failing,
        StreamSpec("garbage", input=garbage),
        *specs_of(clips),
        StreamSpec("truncated", input=truncated, threshold=LOW),
    ]
    with MultiStreamEngine(batched_dir, threads=1) as engine:
        records, reports = multi_run(engine, specs)
    for clip in clips:
        assert reports[clip.stem].error is None
        assert records[clip.stem] == singles[clip.stem]
    assert "could not be read" in reports["garbage"].error and not reports["garbage"].opened
    assert "camera stopped" in reports["stops"].error
    stopped = records["stops"]
    assert 10 <= reports["stops"].stats.steps <= 12  # 3 s of 0.25-s steps
    assert {r["id"] for r in stopped if r["type"] == "start"} <= {
        r["id"] for r in stopped if r["type"] == "end"
    }  # its open events were closed
    with ModelDir(batched_dir, threads=1) as model:
        assert records["truncated"] == single_run(model, truncated)


def test_a_resumed_stream_continues_the_written_records_exactly(
    batched_dir: Path, clips: list[Path], singles: dict
) -> None:
    skip = {clip.stem: len(singles[clip.stem]) // 2 for clip in clips}
    resume_at = 3.5  # s: read unpaced up to here, paced from here
    specs = [
        StreamSpec(
            clip.stem,
            input=clip,
            threshold=LOW,
            realtime=True,
            skip_records=skip[clip.stem],
            resume_at=resume_at,
        )
        for clip in clips
    ]
    began = time.monotonic()
    with MultiStreamEngine(batched_dir, threads=1) as engine:
        records, reports = multi_run(engine, specs)
    wall = time.monotonic() - began
    longest = 7.0  # clip b
    assert longest - resume_at - 0.5 < wall < longest - 1.0  # paced only after resume_at
    for clip in clips:
        assert records[clip.stem] == singles[clip.stem][skip[clip.stem] :]
        assert reports[clip.stem].max_lag is not None and reports[clip.stem].max_lag < 1.0


# ---- the command line ----


def test_cli_many_files_match_single_runs_and_a_corrupt_one_fails_alone(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    model = real_model_dir(tmp_path_factory)
    clips = []
    for seed in DEMO_SEEDS:
        clips.append(tmp_path / f"demo{seed}.mp4")
        write_clip(demo_scenario(seed, DEMO_SECONDS), clips[-1])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"garbage" * 1000)
    out_dir, merged = tmp_path / "events", tmp_path / "all.jsonl"
    args = [a for clip in [*clips, corrupt] for a in ("--input", str(clip))]
    args += ["--model", str(model), "--output-dir", str(out_dir), "--output", str(merged)]
    done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr  # a stream failed; the others ran to their end
    assert "stream 'corrupt'" in done.stderr and "could not be read" in done.stderr
    assert "4 streams: 3 ended, 0 stopped, 1 failed (corrupt)" in done.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{c.stem}.jsonl" for c in clips]
    everything = records_by_stream(merged)
    with ModelDir(model) as loaded:
        for clip in clips:
            written = records_by_stream(out_dir / f"{clip.stem}.jsonl")
            assert list(written) == [clip.stem]
            expected = single_run(loaded, clip, StitchConfig().threshold)
            assert any(r["type"] == "end" for r in expected)
            assert written[clip.stem] == expected == everything[clip.stem]
        last = json.loads((out_dir / f"{clips[0].stem}.jsonl").read_text().splitlines()[-1])
        assert last["type"] == "stats" and last["stream"] == clips[0].stem


def test_cli_sources_file_with_per_stream_thresholds(
    batched_dir: Path, clips: list[Path], singles: dict, tmp_path: Path
) -> None:
    (tmp_path / "media").mkdir()
    shutil.copy(clips[0], tmp_path / "media" / "a.mp4")
    listing = tmp_path / "streams.yaml"
    listing.write_text(
        "streams:\n"
        "  - {name: low, file: media/a.mp4, threshold: 0.02}\n"
        f"  - {{name: high, file: {clips[0]}, threshold: 0.99}}\n"
    )
    merged = tmp_path / "all.jsonl"
    args = ["--sources", str(listing), "--model", str(batched_dir), "--output", str(merged)]
    done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = records_by_stream(merged)
    assert written["low"] == singles["a"] and "high" not in written
    stats = [json.loads(line) for line in merged.read_text().splitlines()]
    assert {r["stream"] for r in stats if r["type"] == "stats"} == {"low", "high"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("streams: [{name: a, file: x.mp4, colour: red}]", "unknown key(s) ['colour']"),
        ("- {file: x.mp4}", "lacks 'name'"),
        ("- {name: a, file: x.mp4, camera: 0, microphone: default}", "give a file, or a camera"),
        ("- {name: a, camera: 0}", "a camera and a microphone go together"),
        ("- {name: a, file: x.mp4, threshold: 1.5}", "threshold 1.5 is not in [0, 1]"),
        ("- {name: a, file: x.mp4, realtime: yes please}", "'realtime' must be true or false"),
        ("- {name: 'a/b', file: x.mp4}", "must be 1-64 letters"),
        ("- {name: a, file: x.mp4}\n- {name: a, file: y.mp4}", "stream names repeat: a"),
        ("streams: {name: a}", "must be a non-empty list"),
        ("[unclosed", "is not valid YAML"),
        ("!!python/object/apply:os.system ['true']", "is not valid YAML"),
    ],
)
def test_a_bad_stream_list_is_one_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    listing = tmp_path / "streams.yaml"
    listing.write_text(text)
    with pytest.raises(StreamListError) as error:
        read_stream_list(listing)
    assert problem in str(error.value) and str(listing) in str(error.value)


def test_stream_list_defaults_and_cli_errors(tmp_path: Path) -> None:
    listing = tmp_path / "streams.yaml"
    listing.write_text(
        "- {name: door, file: d.mp4}\n- {name: hall, camera: 0, microphone: default, "
        "threshold: 0.5, reconnect: true}\n"
    )
    door, hall = read_stream_list(listing, threshold=0.4, realtime=True)
    assert (door.input, door.threshold, door.realtime) == (tmp_path / "d.mp4", 0.4, True)
    assert (hall.camera, hall.microphone, hall.threshold, hall.reconnect) == (
        "0",
        "default",
        0.5,
        True,
    )
    assert unique_names(["a b", "a b", "ü", "x" * 80]) == ["a_b", "a_b-2", "stream", "x" * 60]
    listing.write_text("- {name: x, fille: a.mp4}\n")
    done = subprocess.run(
        [*COMMAND, "--sources", str(listing)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "unknown key(s) ['fille']" in done.stderr
    for args, problem in (
        (["--camera", "0", "--camera", "1", "--mic", "default"], "one --mic per --camera"),
        (["--input", "a.mp4", "--input", "b.mp4", "--show"], "--show shows one stream"),
    ):
        done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and problem in done.stderr


# ---- MultiDetector ----


def file_items(clip: Path) -> list[Item]:
    with FileSource(clip) as source:
        return list(source)


def test_multi_detector_gives_each_stream_what_a_detector_gives(
    batched_dir: Path, clips: list[Path]
) -> None:
    feeds = {clip.stem: file_items(clip) for clip in clips[:2]}
    expected = {}
    for name, items in feeds.items():
        with Detector(batched_dir, threads=1, threshold=LOW) as detector:
            for item in items:
                if isinstance(item, VideoFrame):
                    detector.push_frame(item.image, 100.0 + item.t)
                else:
                    detector.push_audio(item.samples, 100.0 + item.t, item.sample_rate)
            expected[name] = [event.to_record() for event in detector.close()]
    got: dict[str, list[dict]] = {name: [] for name in feeds}
    detector = MultiDetector(batched_dir, threads=1, autoprocess=False)
    for name in feeds:
        detector.add_stream(name, threshold=LOW)
    with pytest.raises(ValueError, match="no open stream named 'nope'"):
        detector.push_frame("nope", np.zeros((8, 8, 3), np.uint8), 0.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        detector.push_frame(clips[0].stem, np.zeros((8, 8), np.uint8), 0.0)
    longest = max(len(items) for items in feeds.values())
    for index in range(longest):  # a round of every stream's next item, then one batch
        for name, items in feeds.items():
            if index < len(items):
                item = items[index]
                if isinstance(item, VideoFrame):
                    detector.push_frame(name, item.image, 50.0 + item.t)
                else:
                    detector.push_audio(name, item.samples, 50.0 + item.t, item.sample_rate)
        detector.process()
        for event in detector.events():
            got[event.stream].append(event.event.to_record())
    for event in detector.close():
        got[event.stream].append(event.event.to_record())
    for name in feeds:
        assert len(expected[name]) >= 5 and got[name] == expected[name]


README_SNIPPET = """\
from loco_stream.stream import MultiDetector
from loco_stream.synth import render_audio, render_frame, sample_scenario

scene = sample_scenario(seed=334, index=0, duration=20.0, split="demo")  # a synthetic clip
detector = MultiDetector(autoprocess=False)  # the packaged default model
for name in ("door", "hall"):
    detector.add_stream(name, threshold=0.3)
for k in range(round(scene.duration * 16)):  # 16 frames and 16 audio blocks a second
    t = k / 16
    for name in ("door", "hall"):  # a round of every stream's input...
        detector.push_frame(name, render_frame(scene, t), t)  # as Detector.push_frame
        detector.push_audio(name, render_audio(scene, 44100, t, t + 1 / 16), t, 44100)
    detector.process()  # ...then every stream's due steps and windows, batched
    for item in detector.events():  # StreamEvent: the stream's name and the Event
        print(item.stream, item.event.type, item.event.label, item.event.start, item.event.end)
for item in detector.close():  # every stream closed: open events end
    print(item.stream, item.event.type, item.event.label, item.event.start, item.event.end)
"""


def test_the_readme_multi_detector_example_is_the_readme_s_and_finds_the_events(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert README_SNIPPET in (Path(__file__).parents[1] / "docs" / "many_streams.md").read_text()
    real = real_model_dir(tmp_path_factory)
    import loco_stream.stream.batched as module

    class FixtureModel(ModelDir):  # MultiDetector() opens the packaged model: the fixture's
        def __init__(self, path: Path | None = None, *args: object) -> None:
            super().__init__(real if path is None else path, *args)

    monkeypatch.setattr(module, "ModelDir", FixtureModel)
    exec(compile(README_SNIPPET, "docs/many_streams.md", "exec"), {})
    ends: dict[str, list[tuple[float, float]]] = {"door": [], "hall": []}
    for line in capsys.readouterr().out.splitlines():
        words = line.split(" ")
        if words[1] == "end":
            ends[words[0]].append((float(words[-2]), float(words[-1])))
    assert ends["door"] == ends["hall"]  # the same input gives the same events in each stream
    for start, end, _ in demo_scenario(334, 20.0).events:
        assert any(tiou((start, end), found) >= 0.5 for found in ends["door"])


def test_cli_sigterm_closes_every_stream_and_exits_0(
    batched_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "events"
    args = [a for clip in clips for a in ("--input", str(clip))]
    args += ["--realtime", "--threshold", str(LOW), "--model", str(batched_dir)]
    process = subprocess.Popen(
        [*COMMAND, *args, "--output-dir", str(out_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out_dir / "a.jsonl").exists():
        time.sleep(0.1)
    time.sleep(2.5)  # about 2 s into the paced streams
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    for clip in clips:
        records = [
            json.loads(line) for line in (out_dir / f"{clip.stem}.jsonl").read_text().splitlines()
        ]
        stats = records[-1]
        assert stats["type"] == "stats" and stats["stream"] == clip.stem
        assert 1.0 <= stats["media_seconds"] < 4.5  # stopped, not run to the end
        starts = {r["id"] for r in records if r["type"] == "start"}
        assert starts <= {r["id"] for r in records if r["type"] == "end"}  # open events closed
    assert "3 streams: 0 ended, 3 stopped, 0 failed" in stdout
