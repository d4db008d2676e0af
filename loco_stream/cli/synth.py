"""``loco-synth``: render a synthetic audio-visual event dataset (mp4 clips + UnAV-style JSON)."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from loco_stream.limits import LimitError, check

SPLIT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # split names become part of file names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loco-synth",
        description=(
            "Render N untrimmed synthetic clips (16 fps 112x112 video + 16 kHz audio, mp4) into "
            "DIR/videos/ and their audio-visual events into DIR/annotations.json (UnAV-100 layout, "
            "merged with an existing file)."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--videos", required=True, type=int, metavar="N", help="clips to render")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="dataset seed, >= 0 (default: 0)"
    )
    parser.add_argument(
        "--split", default="train", metavar="NAME", help="subset name (default: train)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="processes rendering at once (default: 1)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="fixed clip length, for quick smoke datasets (default: UnAV-100-like lengths)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run loco-synth; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check("clips", args.videos, "--videos")
        check("workers", args.workers, "--workers")
    except LimitError as error:
        parser.error(str(error))
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if args.duration is not None and not 1.0 <= args.duration <= 600.0:
        parser.error(f"--duration must be between 1 and 600 s, got {args.duration}")
    if not SPLIT_PATTERN.fullmatch(args.split):
        parser.error(f"--split must be letters, digits and '-', got {args.split!r}")
    from loco_stream.synth.writer import (  # PyAV, OpenCV: once the arguments hold
        ANNOTATIONS,
        generate_dataset,
        read_annotations,
    )

    began = time.perf_counter()
    try:
        ids = generate_dataset(
            args.out,
            args.videos,
            args.seed,
            args.split,
            args.workers,
            progress=True,
            duration=args.duration,
        )
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    wall = time.perf_counter() - began
    database = read_annotations(args.out / ANNOTATIONS)
    media = sum(database[video_id]["duration"] for video_id in ids)
    events = sum(len(database[video_id]["annotations"]) for video_id in ids)
    print(
        f"{len(ids)} clips, {events} events, {media:.1f} s of media in {wall:.1f} s "
        f"({media / wall:.1f}x real time, {args.workers} worker(s)) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
