"""Peak memory (RSS) of a long stream, through `Detector` and through `loco-stream`.

    python benchmarks/bench_memory.py [--minutes 60] [--model DIR]

Six runs, each in its own process so that each peak is its own: the `Detector` fed N minutes of
16 fps frames and 16 kHz audio (both), frames alone (video only) and audio alone (audio only);
`loco-stream --input` on an N-minute file with both tracks, and on files whose audio (video
only) or video (audio only) stops after the first minute. Media are cheap noise pictures and
noise audio, so the model's work is the real one but rendering costs nothing. A table gives the
RSS after the first minutes and at the end (and the peak), for checking that memory stops
growing; a modality alone stops the CLI with its stall error, which the table shows.
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 16
BLOCK_SECONDS = 0.25
SAMPLE_RATE = 16000
EARLY_MINUTES = 5  # "after the first minutes": RSS compared from here to the end
POLL_S = 0.5  # how often the CLI's RSS is read
STARTED_S = 3.0  # the CLI's "start" figure: its RSS this long after launch (imports done)


def media(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A pool of 64 noise pictures (112x112 RGB) and 64 noise blocks (0.25 s)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
    blocks = rng.uniform(-0.3, 0.3, (64, int(BLOCK_SECONDS * SAMPLE_RATE))).astype(np.float32)
    return images, blocks


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def detector_run(minutes: float, only: str | None, model: str | None) -> dict:
    """Child process: push ``minutes`` of media (``only``: one modality) into a Detector."""
    from loco_stream.model_dir import ModelDir
    from loco_stream.stream.detector import Detector
    from loco_stream.stream.timeline import StreamStalled

    images, blocks = media()
    detector = Detector(ModelDir(model, threads=1))
    early = min(EARLY_MINUTES, minutes)
    rss, stalls, peak = {}, 0, 0.0
    for k in range(round(minutes * 60 * FPS)):
        t = k / FPS
        try:
            if only != "audio":
                detector.push_frame(images[k % 64], t)
            if only != "video" and k % round(FPS * BLOCK_SECONDS) == 0:
                detector.push_audio(blocks[k % 64], t)
        except StreamStalled:
            stalls += 1
        if k % (60 * FPS) == 0:
            now = rss_mb()
            peak = max(peak, now)
            rss.setdefault("start", now)
            if t / 60 <= early:
                rss["early"] = now
            print(f"  detector {only or 'both'}: {t / 60:.0f} min, {now:.0f} MB", file=sys.stderr)
    detector.close()
    rss["end"] = rss_mb()
    stats = detector.stats
    return {
        "rss": rss,
        "peak": max(peak, rss["end"]),
        "note": f"{stats.steps} steps, {stats.windows} windows, {stalls} stall reported "
        f"({stats.stalls} restarts at the bound)",
    }


def write_file(path: Path, minutes: float, video_minutes: float, audio_minutes: float) -> Path:
    """An mp4 of noise pictures (H.264) and noise audio (AAC), each track as long as given."""
    import av

    images, blocks = media()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width = video.height = images.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        samples_done = 0
        for k in range(round(minutes * 60 * FPS)):
            t = k / FPS
            if t < video_minutes * 60:
                frame = av.VideoFrame.from_ndarray(images[k % 64], format="rgb24")
                frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
                out.mux(video.encode(frame))
            if k % round(FPS * BLOCK_SECONDS) == 0 and t < audio_minutes * 60:
                block = blocks[k % 64][None]  # (1, N) planar mono
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts, frame.time_base = samples_done, fractions.Fraction(1, SAMPLE_RATE)
                samples_done += block.shape[1]
                out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def cli_run(path: Path, minutes: float, model: str | None) -> dict:
    """``loco-stream --input path`` (a ``minutes`` long file), its RSS read every POLL_S s; the
    early figure is the largest over the wall time of the first minutes of media."""
    command = [sys.executable, "-m", "loco_stream.cli.stream", "--input", str(path)]
    command += ["--threads", "1"] + (["--model", model] if model else [])
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    while process.poll() is None:
        try:
            samples.append((time.perf_counter() - began, rss_mb(process.pid)))
        except OSError:
            break
        time.sleep(POLL_S)
    out, err = process.communicate()
    stats = [line for line in out.splitlines() if line.startswith("stats:")]
    media_seconds = float(stats[-1].split()[1]) if stats else 0.0
    wall = time.perf_counter() - began
    early = [r for s, r in samples if s <= wall * EARLY_MINUTES / minutes]  # its first minutes
    rss = {"start": None, "early": None, "end": None}  # a run stopped early has no such figures
    if media_seconds >= EARLY_MINUTES * 60 and early:
        rss = {
            "start": next((r for s, r in samples if s >= STARTED_S), early[0]),
            "early": max(early),
            "end": samples[-1][1],
        }
    error = err.strip().splitlines()[-1] if process.returncode else ""
    return {
        "rss": rss,
        "peak": max((r for _, r in samples), default=0.0),
        "note": f"exit {process.returncode}, {media_seconds:.0f} s of media in {wall:.0f} s"
        + (f"; {error[:90]}" if error else ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="stream length (60)")
    parser.add_argument("--model", help="model directory (default: the packaged one)")
    parser.add_argument("--child", nargs=2, metavar=("ONLY", "MINUTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        only, minutes = args.child
        result = detector_run(float(minutes), None if only == "both" else only, args.model)
        print(json.dumps(result))
        return
    rows = []
    for only in ("both", "video", "audio"):
        command = [sys.executable, __file__, "--child", only, str(args.minutes)]
        command += ["--model", args.model] if args.model else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append((f"Detector, {only}", json.loads(done.stdout.splitlines()[-1])))
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "both": (args.minutes, args.minutes),
            "video": (args.minutes, 1.0),  # the audio track stops after a minute
            "audio": (1.0, args.minutes),  # the video track stops after a minute
        }
        for only, (video_minutes, audio_minutes) in files.items():
            path = Path(folder) / f"{only}.mp4"
            write_file(path, args.minutes, video_minutes, audio_minutes)
            print(f"  wrote {path.name} ({os.path.getsize(path) >> 20} MB)", file=sys.stderr)
            rows.append((f"loco-stream --input, {only}", cli_run(path, args.minutes, args.model)))
    print(f"\n{args.minutes:g} minutes of stream; RSS in MB\n")
    print(f"| run | at start | after {EARLY_MINUTES} min | at the end | peak | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, result in rows:
        start, early, end = (
            "–" if result["rss"][k] is None else f"{result['rss'][k]:.0f}"
            for k in ("start", "early", "end")
        )
        print(f"| {name} | {start} | {early} | {end} | {result['peak']:.0f} | {result['note']} |")


if __name__ == "__main__":
    main()
