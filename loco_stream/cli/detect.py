"""``loco-detect``: offline detection over whole clips, written as UnAV-style results.

    loco-detect VIDEO... --output results.json [--model DIR] [--plot DIR]
        [--annotations A.json] [--backend onnxruntime] [--threads 2] [--max-events 100]

Each clip is cut into steps exactly as the stream does, its features are extracted once, and the
window graph covers the whole clip in windows of T steps (half-window hops when the clip is longer
than one window: bounded memory for any length). Results use the file stem as video id; files
of one stem in different folders get their folders too (``a/clip``, ``b/clip``), so no result
overwrites another. At most ``--max-events`` events are kept per clip (UnAV-100's 100; a clip
that reaches the cap is reported). ``--output`` and ``--plot`` are checked before any decoding.
A file that cannot be read is reported and skipped; the results of the others are still
written, and the exit status is 1. ``--plot`` draws each clip's events (over its ground truth
when ``--annotations`` has it) as ``DIR/<id>.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
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


def detect_clip(
    model: ModelDir, path: Path, max_events: int | None = None
) -> tuple[list[dict], float]:
    """UnAV result entries of one clip (at most ``max_events``, default the model's cap), and its
    duration in seconds (complete steps)."""
    visual, audio = extract_file(path, model.spec, model.step_features)
    info = model.info
    decode = info.decode
    if max_events is not None:
        decode = dataclasses.replace(decode, max_segments=max_events)
    found = detect_features(model.run_window, visual, audio, info.window, decode)
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
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``; the
    temporary file never stays behind."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def output_problem(path: Path) -> str | None:
    """Why results cannot be written to ``path``, found before any work (None: they can)."""
    folder = path.parent
    if path.is_dir():
        return f"--output '{path}' is a folder; give a file name, e.g. {path / 'results.json'}"
    if not folder.is_dir():
        return f"--output '{path}': its folder '{folder}' does not exist; create it first"
    try:  # the only sure test of a writable folder (permissions, read-only mounts)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as error:
        return f"--output '{path}': cannot write in '{folder}' ({error.strerror})"
    return None


def result_ids(paths: list[Path]) -> dict[Path, str]:
    """A video id per distinct file: its stem, with as many parent folders as it takes to tell
    files of one stem apart (``a/clip``, ``b/clip``)."""
    ids: dict[Path, str] = {}
    for path in paths:
        twins = [p for p in paths if p.stem == path.stem]
        depth = 0
        while len({_tail(p, depth) for p in twins}) < len(twins) and depth < len(path.parts):
            depth += 1
        ids[path] = _tail(path, depth)
    return ids


def _tail(path: Path, depth: int) -> str:
    """The stem with its last ``depth`` folders: ``_tail(Path('x/a/clip.mp4'), 1) == 'a/clip'``."""
    return "/".join([*path.parent.parts[len(path.parent.parts) - depth :], path.stem])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loco-detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path, help="video files with an audio track")
    parser.add_argument("--output", type=Path, required=True, help="results JSON to write")
    parser.add_argument("--model", help="model directory (default: the packaged default model)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="folder for one timeline PNG per clip")
    parser.add_argument("--annotations", type=Path, help="ground truth drawn under --plot")
    parser.add_argument(
        "--max-events",
        type=int,
        metavar="N",
        help="events kept per clip, best first (default: the model's, 100 as in UnAV-100)",
    )
    args = parser.parse_args(argv)
    if args.max_events is not None and args.max_events < 1:
        parser.error("--max-events must be at least 1")
    problem = output_problem(args.output)
    if problem is None and args.plot is not None:
        try:
            args.plot.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problem = f"--plot '{args.plot}': cannot create the folder ({error.strerror})"
    if problem is not None:
        print(f"loco-detect: error: {problem}", file=sys.stderr)
        return 2
    paths = list(dict.fromkeys(p.resolve() for p in args.videos))  # each file once
    ids = result_ids(paths)
    given = {p.resolve(): p for p in args.videos}

    try:
        model = ModelDir(args.model, args.backend, args.threads)
        truth = load_ground_truth(args.annotations) if args.annotations else {}
    except (ModelDirError, BackendUnavailable, EvaluationInputError) as error:
        print(f"loco-detect: error: {error}", file=sys.stderr)
        return 1
    results: dict[str, list[dict]] = {}
    failures = 0
    capped = 0  # clips whose events reached the cap
    started = time.perf_counter()
    media_seconds = 0.0
    cap = args.max_events or model.info.decode.max_segments
    for resolved in tqdm(paths, desc="detect", unit="clip", disable=len(paths) < 2):
        path, video_id = given[resolved], ids[resolved]
        try:
            entries, duration = detect_clip(model, path, cap)
        except MediaError as error:
            failures += 1
            print(f"loco-detect: skipped {path}: {error}", file=sys.stderr)
            continue
        capped += len(entries) >= cap
        results[video_id] = entries
        media_seconds += duration
        write_json_atomically(args.output, {"results": results})  # results so far survive
        if args.plot:
            gt = None  # drawn only for clips the annotation file knows
            if video_id in truth:
                gt = [{"segment": [s, e], "label_id": k} for s, e, k in truth[video_id]]
            plot_name = video_id.replace("/", "__") + ".png"
            plot_timeline(
                args.plot / plot_name, path.name, duration, entries, model.info.classes, gt
            )
    write_json_atomically(args.output, {"results": results})
    if capped:
        print(
            f"loco-detect: note: {capped} clip(s) reached the cap of {cap} events per clip, "
            "their weakest candidates cut (--max-events N keeps more)",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - started
    print(
        f"{len(results)} clip(s), {media_seconds:.1f} s of media in {elapsed:.1f} s "
        f"({media_seconds / max(elapsed, 1e-9):.0f}x real time) -> {args.output}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
