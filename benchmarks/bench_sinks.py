"""What evidence and sinks cost a stream: loco-stream's CPU time on one clip, with and without.

    python benchmarks/bench_sinks.py [--copies 6] [--repeats 3]

The clip is the demo scenario's 20-s clip (seed 334: two events; 112x112 at 16 fps, 16 kHz audio)
played ``--copies`` times in a row (6: 120 s, 12 events, about a third of the time in an event),
read as fast as it decodes. Each variant runs `loco_stream.cli.stream.main` in this process,
``--repeats`` times; the CPU time is the process's (every thread: the evidence encoder, paho's
and the webhook's threads included) over the run, model loading included, median of the runs:

- ``none``: ``--output`` only;
- ``evidence``: ``--evidence DIR`` (a clip and a snapshot per event);
- ``all sinks``: ``--evidence DIR --mqtt`` (a mosquitto started here, when Debian's is installed)
  ``--webhook`` (a receiver here) ``--serve 127.0.0.1:0``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loco_stream.cli.stream import main  # noqa: E402
from loco_stream.synth import sample_scenario, write_clip  # noqa: E402
from tests.test_sinks_support import MOSQUITTO, Broker, Receiver  # noqa: E402


def long_clip(folder: Path, copies: int) -> Path:
    """The 20-s demo clip ``copies`` times in a row (stream copy, no re-encoding)."""
    one = folder / "one.mp4"
    write_clip(sample_scenario(334, 0, 20.0, split="demo"), one)
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{one}'\n" for _ in range(copies)))
    clip = folder / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
        + ["-c", "copy", str(clip)],
        check=True,
    )
    return clip


def cpu_seconds(args: list[str]) -> float:
    """CPU time of this process over one run of loco-stream with ``args``."""
    began = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(args)
    if status != 0:
        raise SystemExit(f"loco-stream {' '.join(args)} exited {status}")
    return time.process_time() - began


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_sinks_"))
    clip = long_clip(folder, options.copies)
    base = ["--input", str(clip), "--output", str(folder / "events.jsonl")]
    evidence = ["--evidence", str(folder / "evidence")]
    receiver = Receiver().start()
    sinks = evidence + ["--webhook", receiver.url, "--serve", "127.0.0.1:0"]
    broker = Broker(folder).start() if MOSQUITTO else None
    if broker is not None:
        sinks += ["--mqtt", f"127.0.0.1:{broker.port}"]
    variants = {"none": base, "evidence": base + evidence, "all sinks": base + sinks}
    try:
        cpu_seconds(base)  # warm-up: caches, lazy imports
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(options.repeats):
            for name, args in variants.items():  # interleaved: the machine's load hits all
                shutil.rmtree(folder / "evidence", ignore_errors=True)
                runs[name].append(cpu_seconds(args))
    finally:
        receiver.stop()
        if broker is not None:
            broker.stop()
    media = 20.0 * options.copies
    none = statistics.median(runs["none"])
    print(f"{media:.0f} s of media, {options.repeats} runs each (median; all runs in s)")
    print("| variant | CPU s | CPU s per media s | vs none | runs |")
    print("|---|---:|---:|---:|---|")
    for name, seconds in runs.items():
        median = statistics.median(seconds)
        shown = " ".join(f"{s:.2f}" for s in seconds)
        print(
            f"| {name} | {median:.2f} | {median / media:.4f} | {100 * (median / none - 1):+.1f}% "
            f"| {shown} |"
        )


if __name__ == "__main__":
    main_bench()
