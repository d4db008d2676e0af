"""What evidence and sinks cost a stream: loco-stream's CPU time on one clip, with and without.

    python benchmarks/bench_sinks.py [--copies 30] [--repeats 3] [--model NAME_OR_DIR] [--size PX]

Two streams of ``--copies`` x 20 s (112x112 at 16 fps, 16 kHz audio; ``--size``: the picture
scaled to PXxPX, as a camera's larger frames), read as fast as they decode:

- ``dense``: the demo scenario's 20-s clip (seed 334: two events) every time (30 copies: 600 s,
  60 events, a third of the time in an event: with 2 s before and after, three quarters of the
  stream goes into clips);
- ``sparse``: that clip once in SPARSE_EVERY copies, the same scene without its events (clutter,
  backdrop and noise only) for the others: two events in 100 s, as a camera that sees about an
  event a minute.

The streams are long beside what the encoder's allowance starts with (`CpuBudget`: 0.1 s of CPU
at most), so what they measure is its share over time, not the first clips' burst.

Each variant runs `loco_stream.cli.stream.main` in this process, ``--repeats`` times; the CPU time
is the process's (every thread: the evidence encoder, paho's and the webhook's threads included)
over the run, model loading included, median of the runs; beside it the evidence encoder thread's
own CPU time (its ``encoder_cpu_s`` counter in the stats record), which the machine's load
disturbs far less than the difference of two whole runs:

- ``none``: ``--output`` only;
- ``evidence``: ``--evidence DIR`` (a clip and a snapshot per event; the encoder within its
  default CPU share, ``--evidence-cpu 8``), and with ``--evidence-cpu none`` (every frame, no
  bound: what the clips cost in full), and for a ``--size`` over 224 with ``--evidence-width``
  half of it (no bound);
- ``all sinks``: ``--evidence DIR --mqtt`` (a mosquitto started here, when Debian's is installed)
  ``--webhook`` (a receiver in a process of its own: its CPU is not the stream's)
  ``--serve 127.0.0.1:0``.

Beside the CPU times, the share of the clips' frames the encoder kept (``frames_encoded`` of
``frames_encoded`` + ``frames_skipped`` in the stats record).

Last, the encoder alone, free of the model and the decoder beside it: the dense stream's frames
and audio (decoded beforehand) and its start and end records (those of its last run: the
sinks do not change them)
replayed ``--repeats`` times into an `EvidenceRecorder` in this process, at the stream times the
records were emitted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loco_stream.cli.stream import main  # noqa: E402
from loco_stream.sinks import EvidenceRecorder  # noqa: E402
from loco_stream.sources.file import FileSource  # noqa: E402
from loco_stream.synth import sample_scenario, write_clip  # noqa: E402
from tests.test_sinks_support import (  # noqa: E402
    MOSQUITTO,
    Broker,
    Receiver,
    replay_into_evidence,
)

SPARSE_EVERY = 5  # the sparse stream: the events' copy once in this many, the scene else


def long_clip(folder: Path, copies: int, sparse: bool, size: int | None = None) -> Path:
    """The 20-s demo clip ``copies`` times in a row (stream copy, no re-encoding); ``sparse``:
    the clip once, then its scene without events; ``size``: the picture scaled to that square."""
    scenario = sample_scenario(334, 0, 20.0, split="demo")
    one, quiet = folder / "one.mp4", folder / "quiet.mp4"
    write_clip(scenario, one)
    clutter = scenario.sprites[: len(scenario.sprites) - len(scenario.visible)]
    scene = dataclasses.replace(scenario, events=[], visible=[], audible=[], sprites=clutter)
    write_clip(dataclasses.replace(scene, sounds=()), quiet)
    parts = [quiet if sparse and k % SPARSE_EVERY else one for k in range(copies)]
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    clip = folder / ("sparse.mp4" if sparse else "dense.mp4")
    video = ["-c", "copy"] if size is None else ["-vf", f"scale={size}:{size}", "-c:a", "copy"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
        + video
        + [str(clip)],
        check=True,
    )
    return clip


def serve_webhooks(connection) -> None:
    """A child process: a webhook receiver whose URL goes back over ``connection``; it stops
    when told to."""
    receiver = Receiver().start()
    connection.send(receiver.url)
    connection.recv()
    receiver.stop()


HALF_SIZE_FROM = 224  # px: streams wider than this also run with clips at half their width


def cpu_seconds(args: list[str], output: Path) -> tuple[float, float, float]:
    """CPU time of this process over one run of loco-stream with ``args``, of the evidence's
    encoder thread in it (its stats counter; 0 without evidence), and the share of the clips'
    frames it kept (1 without evidence)."""
    began = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(args)
    if status != 0:
        raise SystemExit(f"loco-stream {' '.join(args)} exited {status}")
    spent = time.process_time() - began
    stats = json.loads(output.read_text().splitlines()[-1])
    evidence = stats.get("sinks", {}).get("evidence", {})
    encoded = evidence.get("frames_encoded", 0)
    offered = encoded + evidence.get("frames_skipped", 0)
    return spent, evidence.get("encoder_cpu_s", 0.0), encoded / offered if offered else 1.0


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=30, help="20-s copies per stream")
    parser.add_argument("--size", type=int, help="the picture scaled to SIZExSIZE pixels")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument(
        "--model", default="default", help="the model the streams run (default: the default)"
    )
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_sinks_"))
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    receiver = multiprocessing.get_context("spawn").Process(target=serve_webhooks, args=(theirs,))
    receiver.start()
    webhook = ours.recv()
    broker = Broker(folder).start() if MOSQUITTO else None
    evidence = ["--evidence", str(folder / "evidence")]
    unbounded = ["--evidence-cpu", "none"]
    sinks = evidence + ["--webhook", webhook, "--serve", "127.0.0.1:0"]
    if broker is not None:
        sinks += ["--mqtt", f"127.0.0.1:{broker.port}"]
    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    replayed: list[dict] = []
    try:
        for stream in ("dense", "sparse"):
            clip = long_clip(folder, options.copies, stream == "sparse", options.size)
            output = folder / f"{stream}.jsonl"
            base = ["--input", str(clip), "--output", str(output), "--model", options.model]
            variants = {
                "none": base,
                "evidence": base + evidence,
                "evidence, --evidence-cpu none": base + evidence + unbounded,
                "all sinks": base + sinks,
            }
            if options.size and options.size > HALF_SIZE_FROM:  # clips at half the width
                half = ["--evidence-width", str(options.size // 2)] + unbounded
                name = f"evidence, --evidence-width {options.size // 2}, --evidence-cpu none"
                variants[name] = base + evidence + half
            cpu_seconds(base, output)  # warm-up: caches, lazy imports
            for _ in range(options.repeats):
                for name, args in variants.items():  # interleaved: the machine's load hits all
                    shutil.rmtree(folder / "evidence", ignore_errors=True)
                    output.unlink(missing_ok=True)
                    runs.setdefault((stream, name), []).append(cpu_seconds(args, output))
            if stream == "dense":  # the last run's records: the sinks add, never change them
                records = [json.loads(line) for line in output.read_text().splitlines()]
                items = list(FileSource(clip))
                for _ in range(options.repeats):
                    shutil.rmtree(folder / "evidence", ignore_errors=True)
                    recorder = EvidenceRecorder(folder / "evidence", cpu_percent=None)
                    recorder.open()
                    replayed.append(replay_into_evidence(recorder, "replay", items, records))
    finally:
        ours.send("stop")
        receiver.join()
        if broker is not None:
            broker.stop()
    media = 20.0 * options.copies
    print(
        f"{media:.0f} s of media a stream, {options.size or 112} px, model {options.model}, "
        f"{options.repeats} runs each "
        "(medians; runs in s)"
    )
    print(
        "| stream | variant | CPU s | vs none | encoder CPU s | encoder vs none | frames kept "
        "| runs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for (stream, name), measured in runs.items():
        whole = statistics.median(spent for spent, _, _ in measured)
        encoder = statistics.median(encoder for _, encoder, _ in measured)
        kept = statistics.median(kept for _, _, kept in measured)
        none = statistics.median(spent for spent, _, _ in runs[(stream, "none")])
        shown = " ".join(f"{spent:.2f}" for spent, _, _ in measured)
        print(
            f"| {stream} | {name} | {whole:.2f} | {100 * (whole / none - 1):+.1f}% "
            f"| {encoder:.2f} | {100 * encoder / none:.1f}% | {100 * kept:.0f}% | {shown} |"
        )
    encoder = statistics.median(counters["encoder_cpu_s"] for counters in replayed)
    shown = " ".join(f"{counters['encoder_cpu_s']:.3f}" for counters in replayed)
    print(
        f"\nthe dense stream replayed into the evidence alone: encoder CPU {encoder:.3f} s "
        f"(median; runs {shown}), {replayed[0]['clips']} clips, "
        f"{replayed[0]['frames_encoded']} frames encoded"
    )


if __name__ == "__main__":
    main_bench()
