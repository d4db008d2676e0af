"""The stream on the synthetic test split: speed, emission latency, and accuracy against offline.

    python benchmarks/bench_stream.py [--data /work/data/synth] [--split test] [--model DIR]
        [--threads 2] [--threshold 0.3] [--hop STEPS] [--limit N] [--sweep]

For every clip of the split, the clip file is streamed end to end exactly as ``loco-stream
--input`` does (PyAV decoding, resampling, step assembly, extraction, a window every hop,
decoding, stitching, emission; as fast as possible) and detected offline as ``loco-detect`` does.
Prints three tables:

1. speed: the real-time factor (processing time over media duration, end to end and the engine's
   compute alone), and the time of one window and of one step's extraction;
2. latency: ``emitted_at - end`` of the final (end) records and ``emitted_at - start`` of the
   start records, median and p95, in seconds of stream time;
3. accuracy: average mAP (tIoU 0.1-0.9, the UnAV-100 protocol of ``loco_stream.evaluation``) of the
   stream's final events and of offline detection, and their ratio (target >= 95%).

``--sweep`` replays the recorded window outputs through stitchers of other settings (threshold,
confirmation, closing margin), which is exact: the stitcher sees what the run's would have.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.cli.detect import detect_clip  # noqa: E402
from loco_stream.evaluation import Predictions, evaluate, load_ground_truth  # noqa: E402
from loco_stream.model_dir import ModelDir  # noqa: E402
from loco_stream.sources import FileSource  # noqa: E402
from loco_stream.stream.engine import StreamEngine, decode_window  # noqa: E402
from loco_stream.stream.stitch import Event, StitchConfig, Stitcher  # noqa: E402

DEFAULT_DATA = Path("/work/data/synth")
SWEEP_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
SWEEP_CONFIRM = (1, 2, 3)
SWEEP_CLOSE_AFTER = (0.5, 1.0, 2.0)
DUPLICATE_IOU = 0.5


@dataclass
class Window:
    """One window run, as recorded: raw outputs and where it sat in the stream."""

    scores: np.ndarray  # (N, C)
    segments: np.ndarray  # (N, 2), window steps
    first_step: int
    now: float
    emitted_at: float


@dataclass
class ClipRun:
    events: list[Event]
    media_seconds: float
    wall_seconds: float
    compute_seconds: float
    windows: list[Window] = field(default_factory=list)
    end_of_stream: float = 0.0


class Timed:
    """Wraps a callable and adds up the time spent in it."""

    def __init__(self, function) -> None:
        self.function = function
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args):
        began = time.perf_counter()
        try:
            return self.function(*args)
        finally:
            self.seconds += time.perf_counter() - began
            self.calls += 1


def stream_clip(model: ModelDir, path: Path, config: StitchConfig, hop: int | None) -> ClipRun:
    """Stream one file end to end as ``loco-stream --input`` does, recording each window."""
    engine = StreamEngine(model, config, hop)
    outputs: list[tuple[np.ndarray, np.ndarray]] = []
    placements: list[tuple[int, float, float]] = []
    run_window, update = model.run_window, engine.stitcher.update

    def recorded_window(visual, audio, mask):
        scores, segments = run_window(visual, audio, mask)
        outputs.append((scores[0], segments[0]))
        return scores, segments

    def recorded_update(found, window_start, now, full, emitted_at):
        placements.append((engine.ring.first_step, now, emitted_at))
        return update(found, window_start, now, full, emitted_at)

    model.run_window, engine.stitcher.update = recorded_window, recorded_update
    events: list[Event] = []
    try:
        with FileSource(path) as source:
            stats = engine.run(source, events.append)
    finally:
        model.run_window = run_window
    windows = [Window(s, g, *p) for (s, g), p in zip(outputs, placements, strict=True)]
    return ClipRun(
        events,
        stats.media_seconds,
        stats.wall_seconds,
        stats.compute_seconds,
        windows,
        engine.emission_time(),
    )


def replay(model: ModelDir, run: ClipRun, config: StitchConfig) -> list[Event]:
    """The events a stitcher with ``config`` emits from the recorded windows of ``run``."""
    info = model.info
    floor = max(info.decode.score_threshold, config.candidate_floor)
    decode_config = dataclasses.replace(info.decode, score_threshold=floor)
    stitcher = Stitcher(info.classes, config)
    events: list[Event] = []
    for w in run.windows:
        found = decode_window(w.scores, w.segments, w.first_step, w.now, info, decode_config)
        start = w.first_step * info.step_seconds
        events += stitcher.update(found, start, w.now, w.first_step > 0, w.emitted_at)
    return events + stitcher.flush(run.end_of_stream)


def predictions(events_by_clip: dict[str, list[Event]]) -> Predictions:
    return {
        vid: [(e.start, e.end, e.label_id, e.score) for e in events if e.type == "end"]
        for vid, events in events_by_clip.items()
    }


def latencies(events_by_clip: dict[str, list[Event]], kind: str) -> np.ndarray:
    """``emitted_at - end`` (end records) or ``emitted_at - start`` (start records), (K,)."""
    edge = "end" if kind == "end" else "start"
    return np.array(
        [
            e.emitted_at - getattr(e, edge)
            for events in events_by_clip.values()
            for e in events
            if e.type == kind
        ]
    )


def duplicates(ground_truth: dict, events_by_clip: dict[str, list[Event]]) -> int:
    """Final events beyond the first that match one true event (same class, tIoU >= 0.5)."""
    extra = 0
    for vid, truth in ground_truth.items():
        finals = [e for e in events_by_clip.get(vid, []) if e.type == "end"]
        for start, end, label in truth:
            hits = 0
            for e in finals:
                inter = max(0.0, min(end, e.end) - max(start, e.start))
                union = (end - start) + (e.end - e.start) - inter
                hits += e.label_id == label and union > 0 and inter / union >= DUPLICATE_IOU
            extra += max(0, hits - 1)
    return extra


def summary_row(name: str, ground_truth, events_by_clip, offline_map: float) -> str:
    stream_map = evaluate(ground_truth, predictions(events_by_clip)).average
    ends, starts = latencies(events_by_clip, "end"), latencies(events_by_clip, "start")
    finals = sum(e.type == "end" for events in events_by_clip.values() for e in events)
    ratio = f"{100 * stream_map / offline_map:6.1f}%" if offline_map > 0 else "    n/a"
    return (
        f"{name:<34} {stream_map:6.2f} {ratio} "
        f"{_quantile(ends, 0.5):6.2f} {_quantile(ends, 0.95):6.2f} "
        f"{_quantile(starts, 0.5):6.2f} {_quantile(starts, 0.95):6.2f} "
        f"{finals:6d} {duplicates(ground_truth, events_by_clip):4d}"
    )


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else float("nan")


SUMMARY_HEADER = (
    f"{'stitching':<34} {'mAP':>6} {'/offl.':>7} {'end p50':>6} {'p95':>6} "
    f"{'start p50':>6} {'p95':>6} {'events':>6} {'dups':>4}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="annotations.json, videos/")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", type=Path, help="model directory (default: packaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=StitchConfig().threshold)
    parser.add_argument("--hop", type=int, help="steps between windows (default: the model's)")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--sweep", action="store_true", help="replay other stitching settings")
    args = parser.parse_args(argv)

    ground_truth = load_ground_truth(args.data / "annotations.json", args.split)
    clips = sorted(ground_truth)[: args.limit]
    ground_truth = {vid: ground_truth[vid] for vid in clips}
    model = ModelDir(args.model, threads=args.threads)
    extraction = Timed(model.step_features)
    window = Timed(model.run_window)
    model.step_features, model.run_window = extraction, window
    config = StitchConfig(threshold=args.threshold)
    hop = args.hop or model.info.hop_steps
    print(f"model {model.description}, window {model.info.window} steps, hop {hop} steps")
    print(f"{len(clips)} clips of '{args.split}' in {args.data}, stitching {config}")

    runs: dict[str, ClipRun] = {}
    offline: Predictions = {}
    offline_seconds = 0.0
    for index, vid in enumerate(clips):
        path = args.data / "videos" / f"{vid}.mp4"
        runs[vid] = stream_clip(model, path, config, args.hop)
        began = time.perf_counter()
        entries, _ = detect_clip(model, path)
        offline_seconds += time.perf_counter() - began
        offline[vid] = [(*e["segment"], e["label_id"], e["score"]) for e in entries]
        print(f"\r{index + 1}/{len(clips)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    media = sum(r.media_seconds for r in runs.values())
    wall = sum(r.wall_seconds for r in runs.values())
    compute = sum(r.compute_seconds for r in runs.values())
    window_count = sum(len(r.windows) for r in runs.values())
    # the offline pass ran through the same timed graphs: split their time by call counts
    window_ms = 1000 * window.seconds / window.calls
    step_ms = 1000 * extraction.seconds / extraction.calls
    print("\n1. speed (2-core CPU unless said otherwise; processing time / media duration)")
    print(f"  media streamed                 {media:9.1f} s in {len(clips)} clips")
    print(f"  real-time factor, end to end   {wall / media:9.4f}  (decode + engine + emission)")
    print(f"  real-time factor, engine only  {compute / media:9.4f}  (extraction, windows, stitch)")
    print(f"  window graph                   {window_ms:9.2f} ms per window ({window_count} runs)")
    print(f"  extractors                     {step_ms:9.2f} ms per step")
    print(f"  offline (loco-detect)          {offline_seconds / media:9.4f} x media duration")

    offline_map = evaluate(ground_truth, offline).average
    events = {vid: run.events for vid, run in runs.items()}
    print("\n2./3. latency (s of stream time) and accuracy (average mAP, %)")
    print(f"  offline detection (loco-detect): avg mAP {offline_map:.2f}")
    print("  " + SUMMARY_HEADER)
    this_run = f"stream, threshold {config.threshold:g}"
    print("  " + summary_row(this_run, ground_truth, events, offline_map))
    if args.sweep:
        for changed in sweep_configs(config):
            replayed = {vid: replay(model, run, changed) for vid, run in runs.items()}
            name = ", ".join(
                f"{f.name}={getattr(changed, f.name):g}"
                for f in dataclasses.fields(changed)
                if getattr(changed, f.name) != getattr(config, f.name)
            )
            print(
                "  "
                + summary_row(name or "replay of this run", ground_truth, replayed, offline_map)
            )
    model.close()
    return 0


def sweep_configs(config: StitchConfig) -> list[StitchConfig]:
    """The run's own settings (a replay check), then one knob changed at a time."""
    changes = [{}]
    changes += [{"threshold": t} for t in SWEEP_THRESHOLDS if t != config.threshold]
    changes += [{"confirm_windows": k} for k in SWEEP_CONFIRM if k != config.confirm_windows]
    changes += [{"close_after": c} for c in SWEEP_CLOSE_AFTER if c != config.close_after]
    return [dataclasses.replace(config, **change) for change in changes]


if __name__ == "__main__":
    sys.exit(main())
