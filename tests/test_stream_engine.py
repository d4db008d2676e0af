"""The streaming engine and the Detector on real media: steps, windows, damage, rates, a soak."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from loco_stream.features.media import extract_file
from loco_stream.model_dir import ModelDir
from loco_stream.offline import detect_features
from loco_stream.postprocess import steps_to_seconds
from loco_stream.sources import FileSource
from loco_stream.sources.base import AudioBlock, Item, MediaSource, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.detector import Detector
from loco_stream.stream.engine import StreamEngine, StreamStats
from loco_stream.stream.output import JsonlWriter
from loco_stream.stream.stitch import Event, StitchConfig
from loco_stream.synth import write_clip
from tests.test_stream_support import (
    assert_well_formed,
    demo_scenario,
    finals,
    found,
    real_model_dir,
    tiny_model_dir,
    tiou,
    write_scenario_clip,
)

ROOT = Path(__file__).resolve().parents[1]
TINY_THRESHOLD = 0.028  # the random tiny model scores ~0.01-0.03: this gives a few events a minute
SOAK_SECONDS = 3600.0
SOAK_WARMUP_SECONDS = 600.0
SOAK_RSS_GROWTH_BYTES = 8 << 20
SOAK_THRESHOLD = 0.024  # the tiny model on the soak's noise: about an event a second all along
MATCH_IOU = 0.5
LIVE_SEED = 334  # a demo scenario with two clear events inside its first 20 s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelDir:
    return ModelDir(tiny_model_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> ModelDir:
    return ModelDir(real_model_dir(tmp_path_factory))


def run(engine: StreamEngine, items: list[Item]) -> list[Event]:
    events = [e for item in items for e in engine.push(item)]
    return events + engine.finish()


def count_calls(model: ModelDir, name: str) -> list[int]:
    """Wrap ``model.<name>`` to count its calls; returns the (one-element) counter."""
    calls = [0]
    original = getattr(model, name)

    def counted(*args):
        calls[0] += 1
        return original(*args)

    setattr(model, name, counted)
    return calls


# ---- steps, windows, features ----


@pytest.mark.parametrize(("hop", "windows", "graph_calls"), [(4, 10, 10), (8, 5, 10), (3, 14, 14)])
def test_each_step_is_extracted_once_and_each_hop_runs_the_network_once(
    tmp_path_factory: pytest.TempPathFactory, hop: int, windows: int, graph_calls: int
) -> None:
    """Hops that are multiples of the step graph's 4 steps run it (once per 4 new steps); a
    3-step hop runs the window graph (once per hop, + 1 for the unseen last steps)."""
    model = ModelDir(tiny_model_dir(tmp_path_factory))
    assert model.info.step_hop == 4
    extracted, windowed = count_calls(model, "step_features"), count_calls(model, "run_window")
    stepped = count_calls(model.step_graph, "run")
    engine = StreamEngine(model, StitchConfig(threshold=TINY_THRESHOLD), hop=hop)
    events = run(engine, list(DemoSource(seed=1, duration=10.0, realtime=False)))
    assert engine.stats.steps == extracted[0] == 40  # 10 s of 0.25 s steps, each once
    assert engine.stats.windows == windows
    assert (stepped[0], windowed[0]) == ((graph_calls, 0) if hop % 4 == 0 else (0, graph_calls))
    assert engine.stats.media_seconds == 10.0 and engine.stats.frames == 160
    assert_well_formed(events)


def test_stream_windows_see_the_features_offline_extraction_gives(tiny: ModelDir, tmp_path: Path):
    """A file streamed step by step fills the ring with exactly the offline features."""
    clip = tmp_path / "clip.mp4"
    write_clip(demo_scenario(2, 12.0), clip)
    engine = StreamEngine(tiny, StitchConfig(threshold=TINY_THRESHOLD))
    with FileSource(clip) as source:
        engine.run(source, lambda event: None)
    visual, audio = extract_file(clip, tiny.spec, tiny.step_features)
    ring_visual, ring_audio, mask = engine.ring.window_inputs()
    held = engine.ring.size  # the last T steps of 48
    assert engine.stats.steps == len(visual) == 48 and mask[0].sum() == held == tiny.info.window
    assert np.array_equal(ring_visual[0], visual[-held:])
    assert np.array_equal(ring_audio[0], audio[-held:])


# ---- damage: dropped frames, an audio gap; other rates ----


def damaged(items: list[Item], no_video: tuple[float, float], no_audio: tuple[float, float]):
    """The items but the frames in ``no_video`` and the audio blocks starting in ``no_audio``."""
    return [
        i
        for i in items
        if not (isinstance(i, VideoFrame) and no_video[0] <= i.t < no_video[1])
        and not (isinstance(i, AudioBlock) and no_audio[0] <= i.t < no_audio[1])
    ]


def test_dropped_frames_and_an_audio_gap_only_touch_their_steps(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = ModelDir(tiny_model_dir(tmp_path_factory))
    features: list[tuple[np.ndarray, np.ndarray]] = []
    original = model.step_features
    model.step_features = lambda step: features.append(original(step)) or features[-1]
    items = list(DemoSource(seed=3, duration=20.0, realtime=False))
    config = StitchConfig(threshold=TINY_THRESHOLD)
    clean = StreamEngine(model, config)
    clean_events = run(clean, items)
    clean_features, features[:] = list(features), []
    engine = StreamEngine(model, config)
    events = run(engine, damaged(items, no_video=(5.0, 7.0), no_audio=(10.0, 11.0)))
    assert engine.stats.steps == clean.stats.steps == 80  # the stream stays on the clock
    assert engine.stats.frames == clean.stats.frames - 32
    assert engine.stats.audio_gap_seconds == pytest.approx(1.0)
    for index, (clean_step, step) in enumerate(zip(clean_features, features, strict=True)):
        t = index * 0.25
        touched = 5.0 < t + 0.25 and t < 7.0 or 10.0 < t + 0.25 and t < 11.0
        if not touched:
            assert all(np.array_equal(a, b) for a, b in zip(clean_step, step, strict=True)), t
    # what was emitted before the damage reached a window is identical
    before = [e for e in clean_events if e.emitted_at <= 5.0]
    assert before == [e for e in events if e.emitted_at <= 5.0]
    assert_well_formed(events)


def test_a_25_fps_44k_stereo_file_gives_the_events_of_the_16_fps_16k_mono_one(
    real: ModelDir, tmp_path: Path
) -> None:
    scenario = demo_scenario(LIVE_SEED, 20.0)
    standard = write_scenario_clip(scenario, tmp_path / "standard.mp4")
    other = write_scenario_clip(scenario, tmp_path / "other.mp4", 25, 44100, channels=2)
    results = []
    for clip in (standard, other):
        engine = StreamEngine(real)
        events: list[Event] = []
        with FileSource(clip) as source:
            engine.run(source, events.append)
        assert engine.stats.steps == 80 and engine.stats.audio_gap_seconds == 0.0
        results.append(finals(events))
    assert found(scenario.events, results[0], MATCH_IOU) == len(scenario.events)
    assert found(scenario.events, results[1], MATCH_IOU) == len(scenario.events)


# ---- real detections ----


def offline_events(model: ModelDir, clip: Path, threshold: float) -> list[tuple[float, float, int]]:
    """Offline detection of a whole file (what loco-detect does): (start, end, label_id, score)."""
    visual, audio = extract_file(clip, model.spec, model.step_features)
    info = model.info
    positions = info.point_positions
    steps = detect_features(model.run_window, visual, audio, info.window, positions, info.decode)
    seconds = steps_to_seconds(steps, info.step_seconds, info.step_offset, len(visual) * 0.25)
    keep = seconds.score >= threshold
    return list(
        zip(
            seconds.start[keep].tolist(),
            seconds.end[keep].tolist(),
            seconds.label[keep].tolist(),
            seconds.score[keep].tolist(),
            strict=True,
        )
    )


def test_a_file_stream_ends_with_the_events_offline_detection_finds(
    real: ModelDir, tmp_path: Path
) -> None:
    scenario = demo_scenario(7, 40.0)
    clip = tmp_path / "clip.mp4"
    write_clip(scenario, clip)
    engine = StreamEngine(real)
    events: list[Event] = []
    with FileSource(clip) as source:
        engine.run(source, events.append)
    assert_well_formed(events)
    stream = finals(events)
    threshold = engine.stitcher.config.threshold
    offline = offline_events(real, clip, threshold)
    assert offline, "offline detection found nothing to compare with"
    # every confident offline event is a final stream event, and the stream adds none
    confident = [o for o in offline if o[3] >= 2 * threshold]
    matched = [o for o in confident if any(_same(o, e) for e in stream)]
    assert len(matched) == len(confident), (confident, stream)
    assert all(any(_same(o, e) for o in offline) for e in stream), (offline, stream)


def _same(offline: tuple, event: Event) -> bool:
    start, end, label, _ = offline
    return label == event.label_id and tiou((start, end), (event.start, event.end)) >= MATCH_IOU


def test_a_source_that_ends_in_the_middle_of_an_event_closes_and_writes_it(
    real: ModelDir, tmp_path: Path
) -> None:
    source = DemoSource(seed=LIVE_SEED, duration=20.0, realtime=False)
    start, end, label = max(source.ground_truth, key=lambda e: e[1] - e[0])
    cut = (start + end) / 2
    engine = StreamEngine(real)
    path = tmp_path / "events.jsonl"
    with JsonlWriter(path) as writer:
        engine.run(source, lambda e: writer.write(e.to_record()), lambda: engine.now >= cut)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    events = [Event(**{"end": None, **r}) for r in records]
    assert_well_formed(events)
    cut_events = [e for e in finals(events) if e.label_id == label and e.end >= cut - 1.5]
    assert len(cut_events) == 1, events
    assert cut_events[0].start == pytest.approx(start, abs=1.0)
    assert cut_events[0].end <= engine.now + 1e-6 and cut_events[0].emitted_at == engine.now


# ---- Detector ----

README_SNIPPET = """\
from loco_stream import Detector
from loco_stream.synth import render_audio, render_frame, sample_scenario

scene = sample_scenario(seed=334, index=0, duration=20.0, split="demo")  # a synthetic clip
detector = Detector(threshold=0.3)  # the packaged default model, on 2 CPU threads
for k in range(round(scene.duration * 16)):  # 16 frames and 16 audio blocks a second
    t = k / 16
    detector.push_frame(render_frame(scene, t), t)  # (H, W, 3) uint8 RGB
    detector.push_audio(render_audio(scene, 44100, t, t + 1 / 16), t, sample_rate=44100)
    for event in detector.events():  # what is ready now, never waits
        print(event.type, event.id, event.label, event.start, event.end, event.score)
for event in detector.close():  # end of stream: open events are closed
    print(event.type, event.id, event.label, event.start, event.end, event.score)
"""


def test_the_readme_detector_example_runs_and_finds_the_events(
    real: ModelDir, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loco_stream.stream.detector as detector_module

    class FixtureModel(ModelDir):  # Detector() opens the packaged model: the fixture's
        def __init__(self, path: Path | None = None, *args: object) -> None:
            super().__init__(real.path if path is None else path, *args)

    monkeypatch.setattr(detector_module, "ModelDir", FixtureModel)
    exec(compile(README_SNIPPET, "docs/embedding.md", "exec"), {})
    printed = [line.split(" ") for line in capsys.readouterr().out.splitlines()]
    starts = [words[1] for words in printed if words[0] == "start"]
    ends = [
        (float(words[-3]), float(words[-2]), " ".join(words[2:-3]))
        for words in printed
        if words[0] == "end"
    ]
    assert sorted(starts) == sorted(words[1] for words in printed if words[0] == "end")
    for start, end, label_id in demo_scenario(LIVE_SEED, 20.0).events:
        name = real.info.classes[label_id]
        assert any(n == name and tiou((start, end), (s, e)) >= MATCH_IOU for s, e, n in ends)


def test_the_readme_holds_the_detector_example() -> None:
    page = ROOT / "docs" / "embedding.md"
    assert README_SNIPPET in page.read_text(), "paste the snippet into docs/embedding.md"


def test_detector_pushes_from_two_threads_and_resamples(tiny: ModelDir) -> None:
    import threading

    source = list(DemoSource(seed=2, duration=12.0, realtime=False))
    events: list[Event] = []
    detector = Detector(tiny, threshold=TINY_THRESHOLD, on_event=events.append)

    def push_frames() -> None:
        for item in source:
            if isinstance(item, VideoFrame):
                detector.push_frame(item.image, item.t)

    def push_audio() -> None:  # as a 48 kHz stereo device would deliver it
        for item in source:
            if isinstance(item, AudioBlock):
                stereo = np.repeat(np.repeat(item.samples, 3)[:, None], 2, axis=1)
                detector.push_audio(stereo, item.t, sample_rate=48000)

    threads = [threading.Thread(target=push_frames), threading.Thread(target=push_audio)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = detector.close()
    assert detector.stats.steps == 48 and detector.stats.audio_gap_seconds < 0.01
    assert events[len(events) - len(last) :] == last
    assert_well_formed(events)
    with pytest.raises(ValueError, match="uint8 RGB"):
        Detector(tiny).push_frame(np.zeros((4, 4)), 0.0)
    with pytest.raises(RuntimeError, match="closed"):
        detector.push_audio(np.zeros(160), 12.0)
    assert detector.close() == []


# ---- soak ----


class CheapSource(MediaSource):
    """An hour of small frames (16 fps) and noise blocks (0.25 s), as fast as they are made."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.has_video = self.has_audio = True
        self.description = "cheap"
        rng = np.random.default_rng(0)
        self._images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
        self._noise = (0.3 * rng.standard_normal((64, 4000))).astype(np.float32)

    def __iter__(self) -> Iterator[Item]:
        for k in range(round(self.seconds * 16)):
            yield VideoFrame(k / 16, self._images[(k * 7) % 64])
            if k % 4 == 0:
                yield AudioBlock(k / 16, self._noise[(k * 3) % 64], 16000)

    def close(self) -> None:
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.mark.slow
def test_an_hour_of_stream_keeps_memory_flat_and_writes_every_event(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    model = ModelDir(tiny_model_dir(tmp_path_factory), threads=1)
    engine = StreamEngine(model, StitchConfig(threshold=SOAK_THRESHOLD))
    path = tmp_path / "soak.jsonl"
    rss: dict[str, int] = {}

    def on_event(event: Event) -> None:
        writer.write(event.to_record())
        if "warm" not in rss and engine.now >= SOAK_WARMUP_SECONDS:
            rss["warm"] = rss_bytes()

    with JsonlWriter(path) as writer:
        stats = engine.run(CheapSource(SOAK_SECONDS), on_event)
    rss["end"] = rss_bytes()
    assert stats.media_seconds == SOAK_SECONDS and stats.steps == SOAK_SECONDS * 4
    assert rss["end"] - rss["warm"] < SOAK_RSS_GROWTH_BYTES, rss
    records = [json.loads(line) for line in path.read_text().splitlines()]
    events = [Event(**{"end": None, **r}) for r in records]
    assert_well_formed(events)
    assert len(finals(events)) == stats.events > SOAK_SECONDS / 60  # events all along, all written
    assert max(e.emitted_at for e in events) > SOAK_SECONDS - 60


def test_stats_split_the_compute_time_between_extractors_and_window(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = StreamEngine(ModelDir(tiny_model_dir(tmp_path_factory), threads=1))
    stats = engine.run(CheapSource(8.0), lambda event: None)
    assert stats.steps == 32 and stats.windows == 8
    assert 0 < stats.extract_seconds and 0 < stats.window_seconds
    assert stats.extract_seconds + stats.window_seconds <= stats.compute_seconds
    assert "ms a step, window" in stats.line() and "extract_seconds" in stats.to_record(8.0)


def test_the_stats_line_says_the_speed_in_words() -> None:
    paced = StreamStats(media_seconds=60.0, wall_seconds=60.1, compute_seconds=3.7).line()
    assert paced.startswith(
        "stats: 60.0 s of media in 60.1 s, of which detecting took 3.7 s (16x faster than real "
        "time); "
    )
    assert "factor" not in paced and "wall" not in paced
    slow = StreamStats(media_seconds=2.0, compute_seconds=3.0).line()
    assert slow.startswith(
        "stats: 2.0 s of media, detecting took 3.0 s (1.5x slower than real time)"
    )
