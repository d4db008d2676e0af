"""``loco-detect``: offline detection over whole clips, written as UnAV-style results.

    loco-detect VIDEO... --output results.json [--model DIR] [--plot DIR] [--workers N]
        [--ray [auto|local|ADDRESS]]
        [--annotations A.json] [--backend onnxruntime] [--threads 2] [--max-events 100]
        [--threshold S]

Each clip is cut into steps exactly as the stream does, its features are extracted once, and the
window graph covers the whole clip in windows of T steps (half-window hops when the clip is longer
than one window: bounded memory for any length). Results use the file stem as video id; files
of one stem in different folders get their folders too (``a/clip``, ``b/clip``), so no result
overwrites another. At most ``--max-events`` events are kept per clip (UnAV-100's 100; a clip
that reaches the cap is reported, with how many candidates score like an event);
``--threshold S`` keeps only events scoring S or more. ``--output`` and ``--plot`` are checked
before any decoding; a write that fails (a full disk) is one error line and keeps the earlier
file, and a run that detects nothing leaves an earlier file as it was.
A file that cannot be read is reported and skipped; the results of the others are still
written, and the exit status is 1. Ctrl-C keeps the clips done so far (exit status 130).
``--plot`` draws each clip's events (over its ground truth when ``--annotations`` has it) as
``DIR/<id>.png``. ``--workers N`` runs N clips at once in N
processes, each with its own model on ``--threads`` threads (default: the cores shared out); a
worker process that dies costs only the clip it ran (see ``loco_stream.offline``). ``--ray``
runs the clips on Ray actors instead, one per node sized by its CPUs (``--workers N``: N actors).

The options are here, the run in `detect_run`: ``--help`` and argument errors import nothing
heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..defaults import BACKENDS, DEFAULT_THRESHOLD
from ..limits import LimitError, check

LIMITED_FLAGS = ("max_events", "workers", "threads", "threshold")  # each its limit's name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loco-detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path, help="video files with an audio track")
    parser.add_argument("--output", type=Path, required=True, help="results JSON to write")
    parser.add_argument(
        "--model",
        help="model directory, or a packaged model: default or efficientnet, both knowing 16 "
        "synthetic demo classes only (default: default)",
    )
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        choices=BACKENDS,
        help="runtime of the graphs (default: onnxruntime, on the CPU)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per graph in each process (default: 2, or the cores shared by --workers)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="clips detected at once, each worker a process with its own model (default 1; "
        "with --ray: actors, default one per node)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run on a Ray cluster: auto (this machine's, else a private one on 127.0.0.1), "
        'local, or a cluster address; needs pip install "loco-stream[ray]" (default: no Ray; '
        "ADDRESS auto)",
    )
    parser.add_argument(
        "--plot", type=Path, help="folder for one timeline PNG per clip (default: none)"
    )
    parser.add_argument(
        "--annotations", type=Path, help="ground truth drawn under --plot (default: none)"
    )
    parser.add_argument(
        "--max-events",
        type=int,
        metavar="N",
        help="events kept per clip, best first (default: the model's, 100 as in UnAV-100)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        metavar="S",
        help="keep only events scoring S or more (default 0: every candidate, ranked, as mAP "
        f"needs; loco-stream reports events from {DEFAULT_THRESHOLD})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run loco-detect; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for flag in LIMITED_FLAGS:
            if getattr(args, flag) is not None:
                check(flag, getattr(args, flag), "--" + flag.replace("_", "-"))
    except LimitError as error:
        parser.error(str(error))
    if args.ray is not None and Path(args.ray).exists():
        parser.error(
            f"--ray took '{args.ray}', a file, as the cluster's address: put the videos before "
            "--ray, or give it an address (auto, local, HOST:PORT)"
        )
    from .detect_run import detect_videos  # ONNX Runtime, PyAV: once the arguments hold

    return detect_videos(args)


if __name__ == "__main__":
    sys.exit(main())
