"""Any folder of videos to per-step feature files (UnAV-100 layout), with the stream's extractors.

    python -m train.extract_features --videos DIR --out FEATDIR [--extractors NAME|MODEL_DIR]
        [--timing unav100] [--vggish CKPT] [--vggish-pca PCA] [--frames N] [--frame-size PIXELS]
        [--names VISUAL AUDIO] [--workers 2] [--overwrite]

``--extractors`` is a shipped extractor set (``synthetic``, ``efficientnet-logmel``,
``efficientnet-vggish``: ``train/extractor_sets.py``), whose graphs are written once into
``FEATDIR/extractors/<set>-<timing>/`` and kept there beside the features they made (the
EfficientNet sets' visual head untrained: for timing and tests), a folder of two extractor graphs
(``loco-train``'s ``WORKDIR/extractors``, with the head it trained), or a model directory
(default: the packaged default model). Writes ``FEATDIR/<stem>_<visual>.npy`` (T, Dv) and
``FEATDIR/<stem>_<audio>.npy`` (T, Da), float32, one row per step, with the set's feature names
(a folder's or a model directory's: ``visual`` and ``audio``), the patterns the training configs
read.
Steps are cut by the same step assembly as the stream. Files already extracted are kept unless
``--overwrite``. A file that cannot be read is reported and skipped; the others go on, and the
exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from loco_stream.bundle import CARD, VISUAL_GRAPH
from loco_stream.features.checkpoints import CheckpointError
from loco_stream.features.media import MediaError, extract_file
from loco_stream.model_dir import ModelDirError, StepExtractors
from loco_stream.runtime.extractor_graphs import ExtractorGraphs, ExtractorSetError

from .extractor_sets import SETS, PretrainedFiles, add_set_arguments, write_extractor_set

NAMES = ("visual", "audio")  # feature file names of a model directory or a folder's graphs
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


@dataclass(frozen=True)
class Extractors:
    """Where the extractor graphs are and what their feature files are called."""

    folder: str | None  # None: the packaged default model
    is_set: bool  # an extractor set (two graphs) rather than a model directory
    names: tuple[str, str] = NAMES

    def open(self, threads: int = 2) -> StepExtractors | ExtractorGraphs:
        if self.is_set:
            return ExtractorGraphs(self.folder, threads=threads)
        return StepExtractors(self.folder, threads=threads)

    def paths(self, out_dir: Path, video: Path) -> tuple[Path, Path]:
        visual, audio = self.names
        return out_dir / f"{video.stem}_{visual}.npy", out_dir / f"{video.stem}_{audio}.npy"


_worker: StepExtractors | ExtractorGraphs | None = None


def _init_worker(extractors: Extractors, threads: int) -> None:
    global _worker
    _worker = extractors.open(threads)


def _extract_one(video: Path, out_dir: Path, extractors: Extractors) -> tuple[Path, str | None]:
    """Extract one video; returns (video, error message or None). Writes atomically."""
    assert _worker is not None
    try:
        visual, audio = extract_file(video, _worker.spec, _worker)
    except MediaError as error:
        return video, str(error)
    for path, array in zip(extractors.paths(out_dir, video), (visual, audio), strict=True):
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, array)
        os.replace(temporary, path)
    return video, None


def extract_folder(
    videos: list[Path],
    out_dir: Path,
    extractors: Extractors | str | None,
    workers: int,
    progress: bool = True,
) -> dict[Path, str]:
    """Extract every video; returns the failures (video -> message). ``extractors`` may also be
    a model directory's path (None: the packaged default model)."""
    if not isinstance(extractors, Extractors):
        extractors = Extractors(extractors, is_set=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, 2 // workers)
    failures: dict[Path, str] = {}
    bar = tqdm(total=len(videos), desc="extract", unit="video", disable=not progress)
    if workers == 1:
        _init_worker(extractors, threads)
        for video in videos:
            _, error = _extract_one(video, out_dir, extractors)
            if error:
                failures[video] = error
            bar.update()
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(extractors, threads)
        ) as pool:
            count = len(videos)
            for video, error in pool.map(
                _extract_one, videos, [out_dir] * count, [extractors] * count
            ):
                if error:
                    failures[video] = error
                bar.update()
    bar.close()
    return failures


def prepare_extractors(args: argparse.Namespace) -> Extractors:
    """The extractors ``--extractors`` names; a shipped set's graphs are written on first use."""
    if args.extractors not in SETS:
        folder = Path(args.extractors) if args.extractors else None
        if folder and (folder / VISUAL_GRAPH).is_file() and not (folder / CARD).is_file():
            ExtractorGraphs(folder).close()  # an extractor set's folder (loco-train's extractors/)
            return Extractors(str(folder), is_set=True, names=tuple(args.names or NAMES))
        StepExtractors(args.extractors).close()  # fail fast on a bad model directory
        return Extractors(args.extractors, is_set=False)
    extractor_set = SETS[args.extractors]
    spec = extractor_set.spec(args.timing, args.frames, args.frame_size)
    label = f"{args.extractors}-{args.timing}-{spec.frames_per_step}x{spec.frame_size}"
    folder = args.out / "extractors" / label
    if not (folder / "visual_extractor.onnx").is_file():
        print(f"writing the {args.extractors} extractor graphs into {folder}", file=sys.stderr)
        files = PretrainedFiles(args.vggish, args.vggish_pca)
        write_extractor_set(
            args.extractors, folder, args.timing, files, args.frames, args.frame_size
        )
    return Extractors(str(folder), is_set=True, names=extractor_set.feature_names())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.extract_features", description=__doc__)
    parser.add_argument("--videos", type=Path, required=True, help="folder of video files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npy features")
    parser.add_argument(
        "--extractors",
        "--model",
        help="a shipped extractor set, a folder of extractor graphs or a model directory "
        "(default: the packaged default model)",
    )
    add_set_arguments(parser)
    parser.add_argument(
        "--names",
        nargs=2,
        metavar=("VISUAL", "AUDIO"),
        help="feature file names of a folder of extractor graphs, e.g. efficientnet logmel for "
        "the set loco-train wrote (default: visual audio)",
    )
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
    try:
        extractors = prepare_extractors(args)
        if not args.overwrite:
            videos = [
                v for v in videos if not all(p.exists() for p in extractors.paths(args.out, v))
            ]
        failures = extract_folder(videos, args.out, extractors, max(1, args.workers))
    except (ModelDirError, ExtractorSetError, CheckpointError) as error:
        print(f"extract_features: error: {error}", file=sys.stderr)
        return 2
    for video, message in failures.items():
        print(f"extract_features: skipped {video.name}: {message}", file=sys.stderr)
    print(f"{len(videos) - len(failures)} of {len(videos)} videos extracted into {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
