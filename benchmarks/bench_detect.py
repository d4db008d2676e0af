"""Offline throughput of ``loco-detect``: media-hours detected per hour, by number of workers.

    python benchmarks/bench_detect.py [--videos data/synth/videos] [--limit 16]
        [--workers 1,2] [--threads T] [--model DIR] [--batch1] [--ray]

Runs the same clips once per ``--workers`` value through `loco_stream.offline.detect_files`, the
path ``loco-detect --workers N`` takes (worker start-up and model loading included in the time),
and prints one row each: threads per graph in each worker, clips, media hours, wall time,
media-hours per hour and the real-time factor (wall time over media time). Every run must give
the same events (checked). ``--threads`` defaults to ``loco-detect``'s: 2 for one worker, the
cores shared out for more. A model directory with graphs with a batch axis (``python -m export
--batch``) runs them, 32 steps and up to 64 windows a call; ``--batch1`` adds a row per worker
count on its batch-1 graphs. ``--ray`` adds a row per worker count on that many actors of a
private local Ray cluster (``loco-detect --ray local --workers N``; the cluster's start is
timed apart). Clips: any folder of mp4 files with an audio track, e.g. ``loco-synth --out
data/synth --videos 16 --split test``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.bundle import BATCH_GRAPHS, read_card, resolve_dir  # noqa: E402
from loco_stream.offline import (  # noqa: E402
    ClipResult,
    ModelSpec,
    default_threads,
    detect_files,
    detect_files_on_ray,
)
from loco_stream.stream.ray_cluster import connect  # noqa: E402

DEFAULT_VIDEOS = ROOT / "data" / "synth" / "videos"


def run(
    paths: list[Path], spec: ModelSpec, workers: int, ray: bool
) -> tuple[float, dict[Path, ClipResult]]:
    """Wall seconds of detecting ``paths`` with ``workers`` processes (or Ray actors), and the
    results."""
    began = time.perf_counter()
    if ray:
        outcomes = detect_files_on_ray(paths, spec, None, workers, "local")
    else:
        outcomes = detect_files(paths, spec, None, workers)
    results = {r.path: r for r in outcomes}
    return time.perf_counter() - began, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of mp4 files")
    parser.add_argument("--limit", type=int, default=16, help="clips to detect (first by name)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--threads", type=int, help="threads per graph in each worker")
    parser.add_argument("--model", help="model directory (default: the packaged default model)")
    parser.add_argument("--batch1", action="store_true", help="also the batch-1 graphs")
    parser.add_argument("--ray", action="store_true", help="also on a private Ray cluster")
    args = parser.parse_args(argv)
    paths = sorted(args.videos.glob("*.mp4"))[: args.limit]
    if not paths:
        print(
            f"bench_detect: error: no .mp4 files in '{args.videos}'; render some with "
            "`loco-synth --out data/synth --videos 16 --split test`",
            file=sys.stderr,
        )
        return 2
    card = read_card(resolve_dir(args.model))
    has_batch_graphs = set(BATCH_GRAPHS.values()) <= set(card.files)
    rows, reference = [], None
    counts = [int(w) for w in args.workers.split(",")]
    runs = [(workers, True, False) for workers in counts]
    runs += [(workers, False, False) for workers in counts] if args.batch1 else []
    if args.ray:
        began = time.perf_counter()
        connect("local")
        print(f"private Ray cluster started in {time.perf_counter() - began:.1f} s")
        runs += [(workers, True, True) for workers in counts]
    for workers, batched, ray in runs:
        threads = args.threads or default_threads(workers)
        spec = ModelSpec(args.model, "onnxruntime", threads, batched)
        wall, results = run(paths, spec, workers, ray)
        failed = [r for r in results.values() if r.error]
        if failed:
            print(f"bench_detect: error: {failed[0].path}: {failed[0].error}", file=sys.stderr)
            return 1
        events = {path: r.entries for path, r in results.items()}
        if reference is not None and batched and events != reference:
            print(f"bench_detect: error: {workers} workers gave other events", file=sys.stderr)
            return 1
        reference = reference or events
        hours = sum(r.duration for r in results.values()) / 3600
        graphs = "batched" if batched and has_batch_graphs else "batch-1"
        where = f"{workers} Ray actor(s)" if ray else f"{workers} process(es)"
        rows.append((where, threads, graphs, len(paths), hours, wall))
    print(
        "| workers | threads each | graphs | clips | media (h) | wall (s) | media-h per h "
        "| wall / media |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for where, threads, graphs, clips, hours, wall in rows:
        print(
            f"| {where} | {threads} | {graphs} | {clips} | {hours:.3f} | {wall:.1f} | "
            f"{hours / (wall / 3600):.0f} | {wall / (hours * 3600):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
