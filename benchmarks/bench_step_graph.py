"""The step graph against the window graph: compute, accuracy online and offline, latency.

    python benchmarks/bench_step_graph.py --model OLD_DIR --model NEW_DIR [--window-too]
        [--data data/held] [--split test] [--limit N] [--threads 1] [--hop 4]

Every clip is streamed end to end as ``loco-stream --input`` streams it (decoding, extraction,
the network every ``--hop`` steps, decoding, stitching; as fast as possible) and detected offline
as ``loco-detect`` detects it, by each variant in turn, clip by clip (interleaved: a busy machine
slows all variants alike). A variant is a model directory on its step graph when it has one, else
on its window graph; ``--window-too`` adds each step-graph model on its window graph as well.
Prints one row per variant:

- the network (window or step graph): ms per hop, and seconds per media second;
- the stream's compute (extraction, network, decoding, stitching) per media second;
- offline avg mAP, and the stream's final events' avg mAP at threshold 0.05 with its share of
  offline's (the UnAV-100 protocol of ``loco_stream.evaluation``);
- at the default threshold (0.3): ``emitted_at - end`` of the end records, median and p95 (s of
  stream time), and the number of final events.
"""

from __future__ import annotations

import argparse
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
from loco_stream.sources import FileSource  # noqa: E402
from loco_stream.stream.engine import StreamEngine  # noqa: E402
from loco_stream.stream.stitch import Event, StitchConfig  # noqa: E402

MAP_THRESHOLD = 0.05  # the stream's final events are scored for mAP at this threshold


@dataclass
class Variant:
    """One model directory on one graph, and what its runs added up to."""

    name: str
    model: ModelDir
    media_seconds: float = 0.0
    compute_seconds: float = 0.0
    network_seconds: float = 0.0
    hops: int = 0
    offline: Predictions = field(default_factory=dict)
    online: dict[str, dict[float, list[Event]]] = field(default_factory=dict)  # vid -> threshold


def stream(variant: Variant, path: Path, threshold: float, hop: int | None) -> list[Event]:
    """Stream one file as ``loco-stream --input`` does; add up the variant's times."""
    engine = StreamEngine(variant.model, StitchConfig(threshold=threshold), hop)
    events: list[Event] = []
    with FileSource(path) as source:
        stats = engine.run(source, events.append)
    if threshold == StitchConfig().threshold:  # count the times once per clip
        variant.media_seconds += stats.media_seconds
        variant.compute_seconds += stats.compute_seconds
        variant.network_seconds += stats.window_seconds
        variant.hops += stats.windows
    return events


def predictions(events: dict[str, list[Event]]) -> Predictions:
    return {
        vid: [(e.start, e.end, e.label_id, e.score) for e in found if e.type == "end"]
        for vid, found in events.items()
    }


def row(variant: Variant, ground_truth: dict) -> str:
    offline = evaluate(ground_truth, variant.offline).average
    at = {t: {vid: runs[t] for vid, runs in variant.online.items()} for t in (MAP_THRESHOLD, 0.3)}
    online = evaluate(ground_truth, predictions(at[MAP_THRESHOLD])).average
    ends = np.array([e.emitted_at - e.end for f in at[0.3].values() for e in f if e.type == "end"])
    finals = sum(e.type == "end" for found in at[0.3].values() for e in found)
    media = variant.media_seconds
    p50, p95 = np.quantile(ends, [0.5, 0.95]) if len(ends) else (np.nan, np.nan)
    return (
        f"| {variant.name} | {1000 * variant.network_seconds / max(variant.hops, 1):.2f} "
        f"| {variant.network_seconds / media:.4f} | {variant.compute_seconds / media:.4f} "
        f"| {offline:.2f} | {online:.2f} ({online / offline:.3f}) "
        f"| {p50:.2f} / {p95:.2f} | {finals} |"
    )


HEADER = (
    "| variant | network ms per hop | network s per media s | stream compute s per media s "
    "| offline avg mAP | online avg mAP @0.05 (of offline) | end latency p50 / p95 s @0.3 "
    "| final events @0.3 |\n|---|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--window-too", action="store_true", help="step models on windows too")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "held")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hop", type=int, help="steps between runs (default: the model's)")
    args = parser.parse_args(argv)

    variants = []
    for path in args.model:
        model = ModelDir(path, threads=args.threads)
        kind = "step graph" if model.step_graph is not None else "window graph"
        variants.append(Variant(f"{path} ({kind})", model))
        if model.step_graph is not None and args.window_too:
            windowed = ModelDir(path, threads=args.threads, use_step_graph=False)
            variants.append(Variant(f"{path} (window graph)", windowed))
    ground_truth = load_ground_truth(args.data / "annotations.json", args.split)
    clips = sorted(ground_truth)[: args.limit]
    ground_truth = {vid: ground_truth[vid] for vid in clips}
    print(f"{len(clips)} clips of '{args.split}' in {args.data}, {args.threads} thread(s)")
    began = time.perf_counter()
    for index, vid in enumerate(clips):
        path = args.data / "videos" / f"{vid}.mp4"
        for variant in variants:
            variant.online[vid] = {
                threshold: stream(variant, path, threshold, args.hop)
                for threshold in (StitchConfig().threshold, MAP_THRESHOLD)
            }
            entries, _ = detect_clip(variant.model, path)
            variant.offline[vid] = [(*e["segment"], e["label_id"], e["score"]) for e in entries]
        elapsed = time.perf_counter() - began
        print(f"\r{index + 1}/{len(clips)} clips ({elapsed:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    print(HEADER)
    for variant in variants:
        print(row(variant, ground_truth))
        variant.model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
