"""Speed of the synthetic benchmark generator: rendering and encoding, in multiples of real time.

    python benchmarks/bench_synth.py [--clips 6] [--seed 0] [--workers 2]

Prints one row per stage: frames only, audio only, render + encode on one core (``write_clip``),
and ``generate_dataset`` with ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loco_stream.synth import generate_dataset, render_audio, render_frames, sample_scenario
from loco_stream.synth.writer import video_codec


def timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    scenarios = [sample_scenario(args.seed, index) for index in range(args.clips)]
    media = sum(s.duration for s in scenarios)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("render frames", timed(lambda: [sum(1 for _ in render_frames(s)) for s in scenarios])),
            ("render audio", timed(lambda: [render_audio(s) for s in scenarios])),
            (
                f"render + encode, 1 process ({video_codec()} + aac)",
                timed(lambda: generate_dataset(Path(tmp) / "one", args.clips, args.seed)),
            ),
            (
                f"render + encode, {args.workers} processes",
                timed(
                    lambda: generate_dataset(
                        Path(tmp) / "many", args.clips, args.seed, workers=args.workers
                    )
                ),
            ),
        ]
    print(f"{'stage':<44} {'clips':>5} {'media s':>8} {'wall s':>7} {'x real time':>11}")
    for stage, wall in rows:
        print(f"{stage:<44} {args.clips:>5} {media:>8.1f} {wall:>7.2f} {media / wall:>11.1f}")


if __name__ == "__main__":
    main()
