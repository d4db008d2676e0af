"""Any folder of videos to per-step feature files (UnAV-100 layout), with the stream's extractors.

    python -m train.extract_features --videos DIR --out FEATDIR [--model MODEL_DIR]
        [--workers 2] [--overwrite]

Writes ``FEATDIR/<stem>_visual.npy`` (T, Dv) and ``FEATDIR/<stem>_audio.npy`` (T, Da), float32,
one row per 0.25-s step (the model directory's step), computed by the model directory's exported
extractor graphs through the same step assembly as the stream. Files already extracted are kept
unless ``--overwrite``. A file that cannot be read is reported and skipped; the others go on, and
the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from loco_stream.features.media import MediaError, extract_file
from loco_stream.model_dir import ModelDirError, StepExtractors

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}

_worker_extractors: StepExtractors | None = None


def feature_paths(out_dir: Path, video: Path) -> tuple[Path, Path]:
    return out_dir / f"{video.stem}_visual.npy", out_dir / f"{video.stem}_audio.npy"


def _init_worker(model: str | None, threads: int) -> None:
    global _worker_extractors
    _worker_extractors = StepExtractors(model, threads=threads)


def _extract_one(video: Path, out_dir: Path) -> tuple[Path, str | None]:
    """Extract one video; returns (video, error message or None). Writes atomically."""
    assert _worker_extractors is not None
    try:
        visual, audio = extract_file(video, _worker_extractors.spec, _worker_extractors)
    except MediaError as error:
        return video, str(error)
    for path, array in zip(feature_paths(out_dir, video), (visual, audio), strict=True):
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, array)
        os.replace(temporary, path)
    return video, None


def extract_folder(
    videos: list[Path], out_dir: Path, model: str | None, workers: int, progress: bool = True
) -> dict[Path, str]:
    """Extract every video; returns the failures (video -> message)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, 2 // workers)
    failures: dict[Path, str] = {}
    bar = tqdm(total=len(videos), desc="extract", unit="video", disable=not progress)
    if workers == 1:
        _init_worker(model, threads)
        results = (_extract_one(video, out_dir) for video in videos)
        for video, error in results:
            if error:
                failures[video] = error
            bar.update()
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(model, threads)
        ) as pool:
            for video, error in pool.map(_extract_one, videos, [out_dir] * len(videos)):
                if error:
                    failures[video] = error
                bar.update()
    bar.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.extract_features", description=__doc__)
    parser.add_argument("--videos", type=Path, required=True, help="folder of video files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npy features")
    parser.add_argument("--model", help="model directory (default: the packaged default model)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if not args.videos.is_dir():
        print(f"extract_features: error: {args.videos} is not a folder", file=sys.stderr)
        return 2
    videos = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        print(f"extract_features: error: no video files in {args.videos}", file=sys.stderr)
        return 2
    if not args.overwrite:
        videos = [v for v in videos if not all(p.exists() for p in feature_paths(args.out, v))]
    try:
        StepExtractors(args.model).close()  # fail fast on a bad model directory
        failures = extract_folder(videos, args.out, args.model, max(1, args.workers))
    except ModelDirError as error:
        print(f"extract_features: error: {error}", file=sys.stderr)
        return 2
    for video, message in failures.items():
        print(f"extract_features: skipped {video.name}: {message}", file=sys.stderr)
    print(f"{len(videos) - len(failures)} of {len(videos)} videos extracted into {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
