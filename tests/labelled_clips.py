"""A small labelled video set, as a user would bring to ``loco-train``: clips whose events are a
coloured square on screen while its tone sounds, in a UnAV-100-style annotation file with label
names only and no validation subset; plus event-free clips (a square without its tone, a tone
without its square) for ``--background``."""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import av
import numpy as np

FPS = 16
RATE = 16000
SIZE = (128, 96)  # width, height
CLASSES = {  # name -> (RGB colour, tone in Hz)
    "red bell": ((220, 40, 40), 500.0),
    "green horn": ((40, 200, 60), 900.0),
    "blue buzzer": ((50, 80, 230), 1500.0),
}
Event = tuple[float, float, str]  # start s, end s, class name


def write_clip(
    path: Path, seconds: float, seen: list[Event], heard: list[Event], seed: int
) -> None:
    """An mp4 (H.264 16 fps + AAC 16 kHz) of a noisy grey picture and a quiet noise bed, with the
    squares of ``seen`` on screen and the tones of ``heard`` sounding."""
    rng = np.random.default_rng(seed)
    width, height = SIZE
    places = {id(e): (rng.integers(0, width - 40), rng.integers(0, height - 40)) for e in seen}
    millisecond = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = millisecond
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for index in range(round(seconds * FPS)):
            t = index / FPS
            image = rng.integers(100, 130, (height, width, 3), dtype=np.uint8)
            for event in seen:
                if event[0] <= t < event[1]:
                    x, y = places[id(event)]
                    image[y : y + 40, x : x + 40] = CLASSES[event[2]][0]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), millisecond
            out.mux(video.encode(frame))
        out.mux(video.encode())
        times = np.arange(round(seconds * RATE)) / RATE
        wave = 0.02 * rng.standard_normal(len(times))
        for start, end, name in heard:
            on = (times >= start) & (times < end)
            wave[on] += 0.4 * np.sin(2 * np.pi * CLASSES[name][1] * times[on])
        wave = wave.astype(np.float32)[None]
        for start in range(0, wave.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(wave[:, start : start + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = RATE, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


def random_events(rng: np.random.Generator, seconds: float) -> list[Event]:
    """One to three events of 1.5-5 s, apart from each other."""
    events, t = [], float(rng.uniform(0.5, 3.0))
    names = list(CLASSES)
    for _ in range(int(rng.integers(1, 4))):
        length = float(rng.uniform(1.5, 5.0))
        if t + length > seconds - 0.5:
            break
        events.append((round(t, 2), round(t + length, 2), names[int(rng.integers(len(names)))]))
        t += length + float(rng.uniform(1.0, 4.0))
    return events


def write_labelled_set(
    folder: Path, train: int = 24, test: int = 6, seconds: float = 16.0, seed: int = 0
) -> tuple[Path, Path]:
    """``folder/videos/*.mp4`` and ``folder/annotations.json``; returns both paths."""
    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    database = {}
    for index in range(train + test):
        video_id = f"clip{index:03d}"
        events = random_events(rng, seconds)
        write_clip(videos / f"{video_id}.mp4", seconds, events, events, seed * 1000 + index)
        database[video_id] = {
            "subset": "train" if index < train else "test",
            "duration": seconds,
            "annotations": [{"segment": [s, e], "label": name} for s, e, name in events],
        }
    annotations = folder / "annotations.json"
    annotations.write_text(json.dumps({"database": database}))
    return videos, annotations


def write_background_set(
    folder: Path, clips: int = 4, seconds: float = 12.0, seed: int = 1
) -> Path:
    """Event-free clips: squares that are never heard and tones that are never seen."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(clips):
        seen, heard = random_events(rng, seconds), random_events(rng, seconds)
        heard = [(s, e, n) for s, e, n in heard if not any(n == m for _, _, m in seen)]
        write_clip(folder / f"quiet{index}.mp4", seconds, seen, heard, seed * 1000 + index)
    return folder
