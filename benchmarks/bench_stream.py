"""The stream on labelled clips: speed, emission latency, and accuracy against offline detection.

    python benchmarks/bench_stream.py [--data data/synth] [--split test] [--model DIR]
        [--threads 2] [--threshold 0.3] [--hop STEPS] [--hops 1,2,4] [--limit N] [--sweep]

Long clips: render them with ``loco-synth --out data/long150 --videos 16 --seed 150 --split test
--duration 150`` and pass ``--data data/long150``.

For every clip, the file is streamed end to end exactly as ``loco-stream --input`` does (PyAV
decoding, resampling, step assembly, extraction, a window every ``--hop`` steps, decoding,
stitching, emission; as fast as possible) and detected offline as ``loco-detect`` does. Then it is
streamed once more with a window at every step, whose outputs are recorded: the windows of any hop
are a subset of those, so each hop of ``--hops`` is replayed exactly (the replay at ``--hop``
reproduces the first run's events, which is checked). Prints:

1. speed: the real-time factor (processing time over media duration, end to end and the engine's
   compute alone) at ``--hop``, the time of one window and of one step's extraction;
2. per hop and threshold (``--threshold`` and 0.05, the threshold for mAP): average mAP of the
   stream's final events (tIoU 0.1-0.9, the UnAV-100 protocol of ``loco_stream.evaluation``) and
   its share of offline detection's, ``emitted_at - end`` of the end records and ``emitted_at -
   start`` of the start records (median and p95, s of stream time), the events emitted, true events
   emitted twice (two final events of its class with tIoU >= 0.5), and the tIoU of each true event
   longer than the window with its best final event.

``--sweep`` replays the recorded windows at ``--hop`` through stitchers with one setting changed.
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

from loco_stream.evaluation import Predictions, evaluate, load_ground_truth  # noqa: E402
from loco_stream.model_dir import ModelDir  # noqa: E402
from loco_stream.offline import detect_clip  # noqa: E402
from loco_stream.postprocess import temporal_iou  # noqa: E402
from loco_stream.sources import FileSource  # noqa: E402
from loco_stream.stream.engine import (  # noqa: E402
    StreamEngine,
    decode_window,
    ongoing_predictions,
)
from loco_stream.stream.stitch import Event, StitchConfig, Stitcher  # noqa: E402

DEFAULT_DATA = ROOT / "data" / "synth"
MAP_THRESHOLD = 0.05  # the threshold at which the stream's final events are scored for mAP
SWEEP = {
    "threshold": (0.1, 0.2, 0.5),
    "confirm_windows": (1, 3),
    "close_after": (0.25, 1.0),
    "present_score": (0.2, 0.5),
    "reach_seconds": (0.5, 1.0),
    "settle": (1.0, 3.0),
    "long_event": (10.0, 40.0),
}
TWICE_IOU = 0.5  # two final events of a true event's class this close to it: emitted twice


@dataclass
class Window:
    """One window run, as recorded: raw outputs and where it sat in the stream."""

    scores: np.ndarray  # (N, C)
    segments: np.ndarray  # (N, 2), window steps
    first_step: int
    now: float


@dataclass
class ClipRun:
    events: list[Event]
    media_seconds: float
    wall_seconds: float
    compute_seconds: float
    windows: list[Window] = field(default_factory=list)


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


def stream_clip(model: ModelDir, path: Path, config: StitchConfig, hop: int) -> ClipRun:
    """Stream one file end to end as ``loco-stream --input`` does, recording each window."""
    engine = StreamEngine(model, config, hop)
    windows: list[Window] = []
    run_window = model.run_window

    def recorded_window(visual, audio, mask):
        scores, segments = run_window(visual, audio, mask)
        windows.append(Window(scores[0], segments[0], engine.ring.first_step, engine.now))
        return scores, segments

    model.run_window = recorded_window
    events: list[Event] = []
    try:
        with FileSource(path) as source:
            stats = engine.run(source, events.append)
    finally:
        model.run_window = run_window
    return ClipRun(events, stats.media_seconds, stats.wall_seconds, stats.compute_seconds, windows)


def replay(model: ModelDir, run: ClipRun, config: StitchConfig, hop: int) -> list[Event]:
    """The events of a stream at ``hop`` with stitching ``config``, from the windows of a run at
    hop 1: the windows at every ``hop``-th step, plus the last (the end-of-stream window)."""
    info = model.info
    floor = max(info.decode.score_threshold, config.candidate_floor)
    decode_config = dataclasses.replace(info.decode, score_threshold=floor)
    stitcher = Stitcher(info.classes, config)
    events: list[Event] = []
    last = len(run.windows) - 1
    for index, w in enumerate(run.windows):
        if round(w.now / info.step_seconds) % hop and index != last:
            continue
        outputs = w.scores, w.segments, info.point_positions
        found = decode_window(*outputs, w.first_step, w.now, info, decode_config)
        ongoing = ongoing_predictions(*outputs, w.first_step, w.now, info, config)
        start = w.first_step * info.step_seconds
        events += stitcher.update(found, start, w.now, w.first_step > 0, w.now, ongoing)
    return events + stitcher.flush(run.windows[-1].now if run.windows else 0.0)


def predictions(events_by_clip: dict[str, list[Event]]) -> Predictions:
    return {
        vid: [(e.start, e.end, e.label_id, e.score) for e in events if e.type == "end"]
        for vid, events in events_by_clip.items()
    }


def latencies(events_by_clip: dict[str, list[Event]], kind: str) -> np.ndarray:
    """``emitted_at - end`` (end records) or ``emitted_at - start`` (start records), (K,)."""
    return np.array(
        [
            e.emitted_at - getattr(e, kind)
            for events in events_by_clip.values()
            for e in events
            if e.type == kind
        ]
    )


def best_tious(ground_truth: dict, events_by_clip: dict[str, list[Event]], vid: str) -> list:
    """Per true event of ``vid``: the tIoUs of the final events of its class, (K,) each."""
    finals = [e for e in events_by_clip.get(vid, []) if e.type == "end"]
    out = []
    for start, end, label in ground_truth[vid]:
        ours = [e for e in finals if e.label_id == label]
        starts, ends = np.array([e.start for e in ours]), np.array([e.end for e in ours])
        out.append(temporal_iou(start, end, starts, ends) if ours else np.zeros(0))
    return out


def summary_row(
    name: str, ground_truth, events_by_clip, offline_map: float, window_seconds: float
) -> str:
    stream_map = evaluate(ground_truth, predictions(events_by_clip)).average
    ends, starts = latencies(events_by_clip, "end"), latencies(events_by_clip, "start")
    finals = sum(e.type == "end" for events in events_by_clip.values() for e in events)
    twice, long_tious = 0, []
    for vid, truth in ground_truth.items():
        for (start, end, _), tious in zip(
            truth, best_tious(ground_truth, events_by_clip, vid), strict=True
        ):
            twice += int(np.sum(tious >= TWICE_IOU) > 1)
            if end - start > window_seconds:
                long_tious.append(float(tious.max()) if len(tious) else 0.0)
    ratio = f"{100 * stream_map / offline_map:6.1f}%" if offline_map > 0 else "    n/a"
    longs = " ".join(f"{t:.2f}" for t in long_tious) or "-"
    return (
        f"{name:<24} {stream_map:6.2f} {ratio} "
        f"{_quantile(ends, 0.5):6.2f} {_quantile(ends, 0.95):6.2f} "
        f"{_quantile(starts, 0.5):6.2f} {_quantile(starts, 0.95):6.2f} "
        f"{finals:6d} {twice:5d}  {longs}"
    )


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else float("nan")


SUMMARY_HEADER = (
    f"{'stream':<24} {'mAP':>6} {'/offl.':>7} {'end p50':>6} {'p95':>6} "
    f"{'start p50':>6} {'p95':>6} {'events':>6} {'twice':>5}  longer than the window: tIoU"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="annotations.json, videos/")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", type=Path, help="model directory (default: packaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=StitchConfig().threshold)
    parser.add_argument("--hop", type=int, help="steps between windows (default: the model's)")
    parser.add_argument("--hops", default="1,2,4", help="hops to replay (steps, comma-separated)")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--sweep", action="store_true", help="replay other stitching settings")
    args = parser.parse_args(argv)

    ground_truth = load_ground_truth(args.data / "annotations.json", args.split)
    clips = sorted(ground_truth)[: args.limit]
    ground_truth = {vid: ground_truth[vid] for vid in clips}
    model = ModelDir(args.model, threads=args.threads)
    info = model.info
    window_seconds = info.window * info.step_seconds
    extraction = Timed(model.step_features)
    window = Timed(model.run_window)
    model.step_features, model.run_window = extraction, window
    config = StitchConfig(threshold=args.threshold)
    hop = args.hop or info.hop_steps
    hops = sorted({int(h) for h in args.hops.split(",")} | {hop})
    print(f"model {model.description}, window {info.window} steps, hop {hop} steps")
    print(f"{len(clips)} clips of '{args.split}' in {args.data}, stitching {config}")

    runs: dict[str, ClipRun] = {}
    recorded: dict[str, ClipRun] = {}
    offline: Predictions = {}
    offline_seconds = 0.0
    for index, vid in enumerate(clips):
        path = args.data / "videos" / f"{vid}.mp4"
        runs[vid] = stream_clip(model, path, config, hop)
        began = time.perf_counter()
        entries, _ = detect_clip(model, path)
        offline_seconds += time.perf_counter() - began
        offline[vid] = [(*e["segment"], e["label_id"], e["score"]) for e in entries]
        print(f"\r{index + 1}/{len(clips)} clips streamed", end="", file=sys.stderr, flush=True)
    window_ms = 1000 * window.seconds / window.calls
    step_ms = 1000 * extraction.seconds / extraction.calls
    for index, vid in enumerate(clips):  # every step a window: any hop is replayed from these
        recorded[vid] = stream_clip(model, args.data / "videos" / f"{vid}.mp4", config, 1)
        print(f"\r{index + 1}/{len(clips)} clips recorded", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    media = sum(r.media_seconds for r in runs.values())
    wall = sum(r.wall_seconds for r in runs.values())
    compute = sum(r.compute_seconds for r in runs.values())
    window_count = sum(len(r.windows) for r in runs.values())
    print(f"\n1. speed at hop {hop} (processing time / media duration)")
    print(f"  media streamed                 {media:9.1f} s in {len(clips)} clips")
    print(f"  real-time factor, end to end   {wall / media:9.4f}  (decode + engine + emission)")
    print(f"  real-time factor, engine only  {compute / media:9.4f}  (extraction, windows, stitch)")
    print(f"  window graph                   {window_ms:9.2f} ms per window ({window_count} runs)")
    print(f"  extractors                     {step_ms:9.2f} ms per step")
    print(f"  offline (loco-detect)          {offline_seconds / media:9.4f} x media duration")

    same = all(replay(model, recorded[vid], config, hop) == runs[vid].events for vid in clips)
    print(f"  replay of hop {hop} from the recorded windows: {'identical' if same else 'DIFFERS'}")

    offline_map = evaluate(ground_truth, offline).average
    print("\n2. latency (s of stream time) and accuracy (average mAP, %)")
    print(f"  offline detection (loco-detect): avg mAP {offline_map:.2f}")
    print("  " + SUMMARY_HEADER)
    for replayed_hop in hops:
        for threshold in sorted({args.threshold, MAP_THRESHOLD}, reverse=True):
            changed = dataclasses.replace(config, threshold=threshold)
            events = {vid: replay(model, recorded[vid], changed, replayed_hop) for vid in clips}
            name = f"hop {replayed_hop}, threshold {threshold:g}"
            print("  " + summary_row(name, ground_truth, events, offline_map, window_seconds))
    if args.sweep:
        print(f"\n3. stitching settings at hop {hop}, one changed at a time")
        print("  " + SUMMARY_HEADER)
        for knob, values in SWEEP.items():
            for value in values:
                changed = dataclasses.replace(config, **{knob: value})
                events = {vid: replay(model, recorded[vid], changed, hop) for vid in clips}
                name = f"{knob}={value:g}"
                print("  " + summary_row(name, ground_truth, events, offline_map, window_seconds))
    model.close()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
