"""``loco-detect``: offline detection over whole clips, written as UnAV-style results.

    loco-detect VIDEO... --output results.json [--model DIR] [--plot DIR]
        [--annotations A.json] [--backend onnxruntime] [--threads 2]

Each clip is cut into steps exactly as the stream does, its features are extracted once, and the
window graph covers the whole clip in windows of T steps (half-window hops when the clip is longer
than one window: bounded memory for any length). Results use the file stem as video id. A file
that cannot be read is reported and skipped; the results of the others are still written, and the
exit status is 1. ``--plot`` draws each clip's events (over its ground truth when ``--annotations``
has it) as ``DIR/<id>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..evaluation import EvaluationInputError, load_ground_truth
from ..features.media import MediaError, extract_file
from ..model_dir import ModelDir, ModelDirError
from ..offline import detect_features
from ..plot import plot_timeline
from ..postprocess import steps_to_seconds
from ..runtime import BACKENDS, BackendUnavailable


def detect_clip(model: ModelDir, path: Path) -> tuple[list[dict], float]:
    """UnAV result entries of one clip, and its duration in seconds (complete steps)."""
    visual, audio = extract_file(path, model.spec, model.step_features)
    info = model.info
    found = detect_features(model.run_window, visual, audio, info.window, info.decode)
    duration = len(visual) * info.step_seconds
    found = steps_to_seconds(found, info.step_seconds, info.step_offset, duration)
    entries = [
        {
            "segment": [round(float(s), 3), round(float(e), 3)],
            "label": info.classes[int(k)],
            "label_id": int(k),
            "score": round(float(p), 5),
        }
        for s, e, k, p in zip(found.start, found.end, found.label, found.score, strict=True)
    ]
    return entries, duration


def write_json_atomically(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loco-detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path, help="video files with an audio track")
    parser.add_argument("--output", type=Path, required=True, help="results JSON to write")
    parser.add_argument("--model", help="model directory (default: the packaged default model)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="folder for one timeline PNG per clip")
    parser.add_argument("--annotations", type=Path, help="ground truth drawn under --plot")
    args = parser.parse_args(argv)

    try:
        model = ModelDir(args.model, args.backend, args.threads)
        truth = load_ground_truth(args.annotations) if args.annotations else {}
    except (ModelDirError, BackendUnavailable, EvaluationInputError) as error:
        print(f"loco-detect: error: {error}", file=sys.stderr)
        return 1
    results: dict[str, list[dict]] = {}
    failures = 0
    started = time.perf_counter()
    media_seconds = 0.0
    for path in tqdm(args.videos, desc="detect", unit="clip", disable=len(args.videos) < 2):
        try:
            entries, duration = detect_clip(model, path)
        except MediaError as error:
            failures += 1
            print(f"loco-detect: skipped {path}: {error}", file=sys.stderr)
            continue
        results[path.stem] = entries
        media_seconds += duration
        write_json_atomically(args.output, {"results": results})  # results so far survive
        if args.plot:
            gt = None  # drawn only for clips the annotation file knows
            if path.stem in truth:
                gt = [{"segment": [s, e], "label_id": k} for s, e, k in truth[path.stem]]
            plot_timeline(
                args.plot / f"{path.stem}.png", path.name, duration, entries, model.info.classes, gt
            )
    write_json_atomically(args.output, {"results": results})
    elapsed = time.perf_counter() - started
    print(
        f"{len(results)} clip(s), {media_seconds:.1f} s of media in {elapsed:.1f} s "
        f"({media_seconds / max(elapsed, 1e-9):.0f}x real time) -> {args.output}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
