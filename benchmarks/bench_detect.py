"""Offline throughput of ``loco-detect``: media-hours detected per hour, by number of workers.

    python benchmarks/bench_detect.py [--videos data/synth/videos] [--limit 16]
        [--workers 1,2] [--threads T] [--model DIR]

Runs the same clips once per ``--workers`` value through `loco_stream.offline.detect_files`, the
path ``loco-detect --workers N`` takes (worker start-up and model loading included in the time),
and prints one row each: threads per graph in each worker, clips, media hours, wall time,
media-hours per hour and the real-time factor (wall time over media time). Every run must give
the same events (checked). ``--threads`` defaults to ``loco-detect``'s: 2 for one worker, the
cores shared out for more. Clips: any folder of mp4 files with an audio track, e.g. ``loco-synth
--out data/synth --videos 16 --split test``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.offline import ModelSpec, default_threads, detect_files  # noqa: E402

DEFAULT_VIDEOS = ROOT / "data" / "synth" / "videos"


def run(paths: list[Path], model: str | None, workers: int, threads: int) -> tuple[float, dict]:
    """Wall seconds of detecting ``paths`` with ``workers`` processes, and the results."""
    began = time.perf_counter()
    results = {
        r.path: r
        for r in detect_files(paths, ModelSpec(model, "onnxruntime", threads), None, workers)
    }
    return time.perf_counter() - began, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of mp4 files")
    parser.add_argument("--limit", type=int, default=16, help="clips to detect (first by name)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--threads", type=int, help="threads per graph in each worker")
    parser.add_argument("--model", help="model directory (default: the packaged default model)")
    args = parser.parse_args(argv)
    paths = sorted(args.videos.glob("*.mp4"))[: args.limit]
    if not paths:
        print(
            f"bench_detect: error: no .mp4 files in '{args.videos}'; render some with "
            "`loco-synth --out data/synth --videos 16 --split test`",
            file=sys.stderr,
        )
        return 2
    rows, reference = [], None
    for workers in (int(w) for w in args.workers.split(",")):
        threads = args.threads or default_threads(workers)
        wall, results = run(paths, args.model, workers, threads)
        failed = [r for r in results.values() if r.error]
        if failed:
            print(f"bench_detect: error: {failed[0].path}: {failed[0].error}", file=sys.stderr)
            return 1
        events = {path: r.entries for path, r in results.items()}
        if reference is not None and events != reference:
            print(f"bench_detect: error: {workers} workers gave other events", file=sys.stderr)
            return 1
        reference = events
        hours = sum(r.duration for r in results.values()) / 3600
        rows.append((workers, threads, len(paths), hours, wall))
    print(
        "| workers | threads each | clips | media (h) | wall (s) | media-h per h | wall / media |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for workers, threads, clips, hours, wall in rows:
        print(
            f"| {workers} | {threads} | {clips} | {hours:.3f} | {wall:.1f} | "
            f"{hours / (wall / 3600):.0f} | {wall / (hours * 3600):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
