"""loco-detect's run once its arguments are parsed (`detect`): the clips detected here, in
worker processes or on Ray actors, their results written as they come, and a summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..evaluation import EvaluationInputError, load_ground_truth
from ..messages import plain_messages
from ..model_dir import ModelDir, ModelDirError
from ..offline import (
    ClipResult,
    ModelSpec,
    default_threads,
    detect_files,
    detect_files_on_ray,
)
from ..plot import plot_timeline
from ..runtime import BackendUnavailable
from ..stream.batched import BatchedModel
from ..stream.ray_cluster import RayUnavailable
from ..stream.stitch import DEFAULT_THRESHOLD


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


def _plot(
    folder: Path, video_id: str, outcome: ClipResult, classes: tuple, truth: list | None
) -> None:
    """The clip's timeline as ``folder/<id>.png``, over its ground truth when known."""
    gt = None if truth is None else [{"segment": [s, e], "label_id": k} for s, e, k in truth]
    plot_name = video_id.replace("/", "__") + ".png"
    plot_timeline(
        folder / plot_name, outcome.path.name, outcome.duration, outcome.entries, classes, gt
    )


def _outcomes(
    args: argparse.Namespace,
    paths: list[Path],
    model: ModelDir | BatchedModel,
    threads: int,
    cap: int,
) -> Iterator[ClipResult]:
    """The clips' results as they finish: here, in worker processes, or on Ray actors."""
    spec = ModelSpec(args.model, args.backend, threads)
    if args.ray is not None:
        return detect_files_on_ray(paths, spec, cap, args.workers, args.ray)
    workers = args.workers or 1
    return detect_files(paths, model if workers == 1 else spec, cap, workers)


def detect_videos(args: argparse.Namespace) -> int:
    """Detect ``args.videos`` as the parsed options say; returns the exit status."""
    plain_messages("loco-detect")
    workers = args.workers or 1
    threads = args.threads or default_threads(workers)
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

    try:  # opened here even for workers: a broken model stops everything before any decoding
        model = ModelSpec(args.model, args.backend, threads).open()
        truth = load_ground_truth(args.annotations) if args.annotations else {}
    except (ModelDirError, BackendUnavailable, EvaluationInputError) as error:
        print(f"loco-detect: error: {error}", file=sys.stderr)
        return 1
    cap = args.max_events or model.info.decode.max_segments
    classes = model.info.classes
    if args.ray is not None or workers > 1:
        model.close()  # the workers open their own
    try:
        outcomes = _outcomes(args, [given[p] for p in paths], model, threads, cap)
    except RayUnavailable as error:
        print(f"loco-detect: error: {error}", file=sys.stderr)
        return 1
    found: dict[str, list[dict]] = {}
    failures = 0
    capped = 0  # clips whose events reached the cap
    started = time.perf_counter()
    media_seconds = 0.0
    outcomes = tqdm(
        outcomes,
        desc="detect",
        unit="clip",
        total=len(paths),
        disable=len(paths) < 2,
    )
    interrupted = False
    try:
        for outcome in outcomes:
            path = outcome.path
            video_id = ids[path.resolve()]
            if outcome.error is not None:
                failures += 1
                tqdm.write(f"loco-detect: skipped {path}: {outcome.error}", file=sys.stderr)
                continue
            entries = [e for e in outcome.entries if e["score"] >= args.threshold]
            capped += len(outcome.entries) >= cap
            found[video_id] = entries
            media_seconds += outcome.duration
            write_json_atomically(args.output, {"results": found})  # results so far survive
            if args.plot:
                _plot(args.plot, video_id, outcome, classes, truth.get(video_id))
    except KeyboardInterrupt:  # Ctrl-C: the clips done so far are kept; workers are stopped
        interrupted = True
        outcomes.close()
    except OSError as error:  # a full disk, a lost permission: the last whole file stays
        outcomes.close()
        where = error.filename or args.output
        print(
            f"loco-detect: error: cannot write '{where}': {error.strerror}; {args.output} keeps "
            f"the results written before (free space or fix the permission, then run again)",
            file=sys.stderr,
        )
        return 1
    finally:
        if args.ray is None and workers == 1:
            model.close()
    results = {ids[p]: found[ids[p]] for p in paths if ids[p] in found}  # in the order given
    if found:
        try:
            write_json_atomically(args.output, {"results": results})
        except OSError as error:
            print(
                f"loco-detect: error: cannot write '{args.output}': {error.strerror}; it keeps "
                "the results written before",
                file=sys.stderr,
            )
            return 1
    elif args.output.exists():
        print(
            f"loco-detect: no clip was detected: {args.output} is left as it was",
            file=sys.stderr,
        )
    else:
        write_json_atomically(args.output, {"results": {}})
    if capped:
        print(f"loco-detect: note: {_cap_note(found, capped, cap)}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    if interrupted:
        print(
            f"loco-detect: interrupted: the {len(results)} clip(s) done are in {args.output}",
            file=sys.stderr,
        )
        return 130
    print(
        f"{len(results)} clip(s), {media_seconds:.1f} s of media in {elapsed:.1f} s "
        f"({media_seconds / max(elapsed, 1e-9):.0f}x real time) -> {args.output}"
    )
    return 1 if failures else 0


def _cap_note(found: dict[str, list[dict]], capped: int, cap: int) -> str:
    """What reaching the cap means: how many candidates score like an event of loco-stream."""
    scores = [entry["score"] for entries in found.values() for entry in entries]
    strong = sum(score >= DEFAULT_THRESHOLD for score in scores)
    best = max(scores, default=0.0)
    return (
        f"{capped} clip(s) reached the cap of {cap} candidates per clip, their weakest cut "
        f"(--max-events N keeps more); {strong} of the {len(scores)} kept score "
        f"{DEFAULT_THRESHOLD} or more (the best {best:.3f}): the others are low-score candidates "
        f"ranked for mAP, not detections (--threshold {DEFAULT_THRESHOLD} keeps only events)"
    )
