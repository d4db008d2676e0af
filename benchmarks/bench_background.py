"""False events on real background media, and the held-out synthetic mAP, per model.

    python benchmarks/bench_background.py [--model DIR ...] --background data/background/heldout
        [--synth data/synth] [--split test] [--threshold 0.3] [--threads 2] [--output FILE.json]

Build the background set first: ``python -m train.background --out data/background``. Its clips
hold no audio-visual event at all, so every event is false. For each model (``--model`` as often
as needed; default: the shipped default model):

1. each background clip is streamed end to end as ``loco-stream --input FILE`` does (PyAV decoding,
   resampling, step assembly, extraction, windows, stitching at ``--threshold``, as fast as it
   decodes), and the events it emits are counted: false events per minute of background;
2. each background clip is detected offline as ``loco-detect`` does: its detections (all of them,
   up to the model's cap of a clip, and those scoring at least ``--threshold``);
3. with ``--synth``, the ``--split`` clips of that synthetic data set are detected offline and
   scored with the project's evaluator (UnAV-100 protocol, mAP at tIoU 0.1-0.9): avg mAP.

Prints one row per model, then its false events by kind of picture and of sound (from the set's
``background.json``, when it lies beside or above the folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.evaluation import evaluate, load_ground_truth  # noqa: E402
from loco_stream.model_dir import ModelDir, ModelDirError  # noqa: E402
from loco_stream.offline import detect_clip  # noqa: E402
from loco_stream.sources import FileSource  # noqa: E402
from loco_stream.stream.engine import StreamEngine  # noqa: E402
from loco_stream.stream.stitch import DEFAULT_THRESHOLD, Event, StitchConfig  # noqa: E402
from loco_stream.synth.writer import read_annotations  # noqa: E402

METADATA = "background.json"


@dataclass
class ClipOutcome:
    """One background clip under one model."""

    file: str
    seconds: float  # media streamed (complete steps)
    events: list[dict]  # final events the stream emitted (all false)
    offline: list[float]  # scores of the offline detections


@dataclass
class ModelOutcome:
    name: str
    clips: list[ClipOutcome] = field(default_factory=list)
    test_map: float | None = None
    test_clips: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part

    @property
    def minutes(self) -> float:
        return sum(c.seconds for c in self.clips) / 60.0

    @property
    def false_events(self) -> int:
        return sum(len(c.events) for c in self.clips)


def stream_clip(model: ModelDir, path: Path, threshold: float) -> tuple[list[Event], float]:
    """The final events ``loco-stream --input path --threshold T`` emits, and the media seconds."""
    source = FileSource(path)
    engine = StreamEngine(model, StitchConfig(threshold=threshold))
    finals: list[Event] = []
    try:
        engine.run(source, lambda e: finals.append(e) if e.type == "end" else None)
    finally:
        source.close()
    return finals, engine.stats.media_seconds


def background_clips(folder: Path) -> tuple[list[Path], dict[str, dict]]:
    """The folder's clips, and their background.json records keyed by file name (if found)."""
    if not folder.is_dir():
        raise SystemExit(
            f"bench_background: error: --background '{folder}' is not a folder; build the set "
            "with `python -m train.background --out data/background` and pass its heldout/"
        )
    clips = sorted(folder.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"bench_background: error: no .mp4 clips in '{folder}'")
    for candidate in (folder / METADATA, folder.parent / METADATA):
        if candidate.is_file():
            records = json.loads(candidate.read_text(encoding="utf-8"))["clips"]
            return clips, {Path(r["file"]).name: r for r in records}
    return clips, {}


def synth_clips(folder: Path, split: str) -> tuple[Path, list[Path]]:
    """The annotation file and the videos of ``split`` of a synthetic data set, all present."""
    annotations = folder / "annotations.json"
    try:
        database = read_annotations(annotations)
    except ValueError as error:
        raise SystemExit(f"bench_background: error: {error}") from None
    ids = sorted(vid for vid, entry in database.items() if entry.get("subset") == split)
    if not ids:
        raise SystemExit(
            f"bench_background: error: '{annotations}' has no {split!r} clips (yet); render "
            f"them (loco-synth --split {split}) or leave out --synth"
        )
    paths = [folder / "videos" / f"{vid}.mp4" for vid in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(
            f"bench_background: error: {len(missing)} of the {len(ids)} {split!r} videos are "
            f"missing, e.g. '{missing[0]}'"
        )
    return annotations, paths


def run_model(
    model_path: Path | None,
    clips: list[Path],
    synth: tuple[Path, list[Path]] | None,
    split: str,
    threshold: float,
    threads: int,
) -> ModelOutcome:
    name = "shipped default" if model_path is None else str(model_path)
    try:
        model = ModelDir(model_path, "onnxruntime", threads)
    except (ModelDirError, ValueError) as error:
        raise SystemExit(f"bench_background: error: {error}") from None
    outcome = ModelOutcome(name)
    with model:
        began = time.perf_counter()
        for path in tqdm(clips, desc=f"stream {Path(name).name}", unit="clip"):
            finals, seconds = stream_clip(model, path, threshold)
            entries, _ = detect_clip(model, path)
            events = [
                {"label": e.label, "start": e.start, "end": e.end, "score": round(e.score, 4)}
                for e in finals
            ]
            offline = [entry["score"] for entry in entries]
            outcome.clips.append(ClipOutcome(path.name, seconds, events, offline))
        outcome.seconds["background"] = time.perf_counter() - began
        if synth is not None:
            began = time.perf_counter()
            annotations, paths = synth
            results = {}
            for path in tqdm(paths, desc=f"{split} {Path(name).name}", unit="clip"):
                results[path.stem], _ = detect_clip(model, path)
            predictions = {
                vid: [(*e["segment"], e["label_id"], e["score"]) for e in entries]
                for vid, entries in results.items()
            }
            truth = load_ground_truth(annotations, split)
            outcome.test_map = evaluate(truth, predictions).average
            outcome.test_clips = len(paths)
            outcome.seconds["synth"] = time.perf_counter() - began
    return outcome


def table(outcomes: list[ModelOutcome], threshold: float) -> str:
    header = (
        f"{'model':<40} {'false events/min':>16} {'background min':>14} {'clips':>5} "
        f"{'offline dets (all / >=' + format(threshold, 'g') + ')':>26} {'test avg mAP':>12}"
    )
    lines = [header, "-" * len(header)]
    for o in outcomes:
        rate = o.false_events / o.minutes if o.minutes else float("nan")
        dets = sum(len(c.offline) for c in o.clips)
        strong = sum(s >= threshold for c in o.clips for s in c.offline)
        test = f"{o.test_map:.2f}" if o.test_map is not None else "-"
        name = o.name if len(o.name) <= 40 else "..." + o.name[-37:]
        lines.append(
            f"{name:<40} {rate:>16.2f} {o.minutes:>14.1f} {len(o.clips):>5} "
            f"{f'{dets} / {strong}':>26} {test:>12}"
        )
    return "\n".join(lines)


def by_kind(outcome: ModelOutcome, records: dict[str, dict]) -> str:
    """False events per minute by kind of picture and by kind of sound."""
    lines = []
    for title, kinds_of in (
        ("picture", lambda r: [r["picture"]]),
        ("sound", lambda r: r["sound"]),
    ):
        events, seconds = Counter(), Counter()
        for clip in outcome.clips:
            for kind in kinds_of(records[clip.file]):
                events[kind] += len(clip.events)
                seconds[kind] += clip.seconds
        cells = [f"{k} {60 * events[k] / seconds[k]:.2f}" for k in sorted(seconds)]
        lines.append(f"  false events/min by {title}: " + ", ".join(cells))
    worst = Counter(e["label"] for c in outcome.clips for e in c.events).most_common(3)
    if worst:
        lines.append("  most frequent false classes: " + "; ".join(f"{n}x {k}" for k, n in worst))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", type=Path, help="model directory (repeat; default: shipped)"
    )
    parser.add_argument("--background", required=True, type=Path, help="held-out background clips")
    parser.add_argument("--synth", type=Path, help="synthetic data set for the held-out mAP")
    parser.add_argument("--split", default="test", help="split of --synth to score (test)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per graph (2)")
    parser.add_argument("--output", type=Path, help="JSON with every clip's false events")
    args = parser.parse_args(argv)
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold is a score, between 0 and 1")
    clips, records = background_clips(args.background)
    synth = synth_clips(args.synth, args.split) if args.synth is not None else None
    outcomes = [
        run_model(path, clips, synth, args.split, args.threshold, args.threads)
        for path in (args.model or [None])
    ]
    print(f"\nbackground: {args.background} ({len(clips)} clips); threshold {args.threshold:g}")
    print(table(outcomes, args.threshold))
    for outcome in outcomes:
        if records and all(c.file in records for c in outcome.clips):
            print(f"{outcome.name}:")
            print(by_kind(outcome, records))
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in outcome.seconds.items())
        print(f"  wall time: {parts}")
    if args.output is not None:
        data = {
            o.name: {
                "false_events_per_minute": o.false_events / o.minutes if o.minutes else None,
                "minutes": o.minutes,
                "test_avg_map": o.test_map,
                "clips": [vars(c) for c in o.clips],
            }
            for o in outcomes
        }
        args.output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
