"""Writing clips (mp4: H.264 or MPEG-4 video + AAC audio) and their UnAV-100-style annotations.

The video codec is chosen at run time: ``libx264`` when PyAV's bundled FFmpeg has that encoder
(the PyPI wheels do), otherwise FFmpeg's own ``mpeg4``. Video is yuv420p at FPS frames per second
with ``pts`` = frame index in a ``1/FPS`` time base (the mp4 track's timescale is FPS too); audio is
SAMPLE_RATE Hz mono AAC (the decoded track may run up to 1023 samples of encoder padding past the
video's end). Decoded output depends only on the seed: encoders run single-threaded, and
x264's macroblock-tree rate control is off (with B-frames it gave run-to-run differences here).

Files appear atomically: each mp4 and ``annotations.json`` is written under a temporary name and
renamed, and ``annotations.json`` is merged with an existing one (so splits can share a folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from loco_stream.synth.classes import CLASSES, FPS, FRAME_SIZE, SAMPLE_RATE
from loco_stream.synth.render import render_audio, render_frames
from loco_stream.synth.scenario import Interval, Scenario, sample_scenario

X264_OPTIONS = {"crf": "23", "preset": "veryfast", "x264-params": "mbtree=0"}
MPEG4_BIT_RATE = 600_000  # the fallback encoder has no constant-quality option through PyAV
AUDIO_CODEC, AUDIO_BITRATE = "aac", 48_000
AUDIO_FRAME = 1024  # samples per AAC frame
ANNOTATIONS = "annotations.json"


@lru_cache(maxsize=1)
def video_codec() -> str:
    """``libx264`` if PyAV's FFmpeg can encode with it, else ``mpeg4``."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return "mpeg4"
    return "libx264"


def write_clip(scenario: Scenario, path: str | Path) -> None:
    """Render ``scenario`` and write it to ``path`` as an mp4 with a video and an audio track."""
    path = Path(path)
    part = path.with_name(f".{path.name}.part")
    try:
        with av.open(
            str(part), "w", format="mp4", options={"video_track_timescale": str(FPS)}
        ) as container:
            container.metadata["title"] = scenario.video_id
            _encode(container, scenario)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _encode(container: av.container.OutputContainer, scenario: Scenario) -> None:
    codec = video_codec()
    video = container.add_stream(
        codec, rate=FPS, options=X264_OPTIONS if codec == "libx264" else {}
    )
    if codec == "mpeg4":
        video.bit_rate = MPEG4_BIT_RATE
    video.width = video.height = FRAME_SIZE
    video.pix_fmt = "yuv420p"
    video.time_base = Fraction(1, FPS)
    video.codec_context.thread_count = 1
    audio = container.add_stream(AUDIO_CODEC, rate=SAMPLE_RATE, layout="mono")
    audio.bit_rate = AUDIO_BITRATE
    pending = np.zeros(0, np.float32)  # rendered audio not yet encoded
    pts = 0  # sample index of pending[0]
    for k, (_, rgb) in enumerate(render_frames(scenario)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = k, Fraction(1, FPS)
        container.mux(video.encode(frame))
        last = k + 1 == scenario.num_frames
        if (k + 1) % FPS == 0 or last:  # audio one second at a time, in whole AAC frames
            begin = (pts + len(pending)) / SAMPLE_RATE
            chunk = render_audio(scenario, SAMPLE_RATE, start=begin, end=(k + 1) / FPS)
            pending = np.concatenate([pending, chunk])
            usable = len(pending) if last else len(pending) - len(pending) % AUDIO_FRAME
            for i in range(0, usable, AUDIO_FRAME):
                samples = pending[i : min(i + AUDIO_FRAME, usable)]
                container.mux(audio.encode(_audio_frame(samples, pts + i)))
            pending, pts = pending[usable:], pts + usable
    container.mux(video.encode())
    container.mux(audio.encode())


def _audio_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts, frame.time_base = pts, Fraction(1, SAMPLE_RATE)
    return frame


def annotation_entry(scenario: Scenario) -> dict:
    """The clip's UnAV-100 database entry, plus the unimodal ``visible``/``audible`` intervals."""

    def presence(intervals: list[Interval]) -> list[dict]:
        return [{"segment": [s, e], "label_id": k} for s, e, k in intervals]

    return {
        "subset": scenario.split,
        "duration": scenario.duration,
        "fps": FPS,
        "annotations": [
            {"segment": [s, e], "label": CLASSES[k].name, "label_id": k}
            for s, e, k in scenario.events
        ],
        "visible": presence(scenario.visible),
        "audible": presence(scenario.audible),
    }


def read_annotations(path: str | Path) -> dict:
    """The ``database`` of an annotations file ({} if it does not exist); ValueError if invalid."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} exists but is not valid JSON ({error})") from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict) or not all(isinstance(v, dict) for v in database.values()):
        raise ValueError(f"{path} exists but is not an annotation file (no 'database' mapping)")
    return database


def write_annotations(path: str | Path, database: dict) -> None:
    """Write ``{"database": ...}`` atomically, one video per line, sorted by video id."""
    path = Path(path)
    lines = [f" {json.dumps(vid)}: {json.dumps(entry)}" for vid, entry in sorted(database.items())]
    text = '{"database": {\n' + ",\n".join(lines) + "\n}}\n"
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def generate_dataset(
    out_dir: str | Path,
    num_videos: int,
    seed: int,
    split: str = "train",
    workers: int = 1,
    progress: bool = False,
    duration: float | None = None,
    first: int = 0,
) -> list[str]:
    """Render clips ``first..first+num_videos-1`` of ``(seed, split)`` into ``out_dir``; return
    their ids. (A clip depends only on (seed, split, index), so a data set grows in pieces.)

    ``duration`` fixes every clip's length (for quick smoke datasets) instead of UnAV-like lengths.

    Videos go to ``out_dir/videos/<id>.mp4``; ``out_dir/annotations.json`` gains their entries.
    Problems that can be seen up front (a bad count, an unwritable folder, an invalid existing
    annotation file) raise before anything is rendered.
    """
    if num_videos < 1 or workers < 1:
        raise ValueError(f"num_videos and workers must be >= 1, got {num_videos} and {workers}")
    out_dir = Path(out_dir)
    database = read_annotations(out_dir / ANNOTATIONS)
    videos = out_dir / "videos"
    try:
        videos.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create {videos}: {error.strerror or error}") from None
    for folder in (out_dir, videos):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write into {folder}")
    indices = range(first, first + num_videos)
    jobs = [(seed, index, split, duration, str(videos)) for index in indices]
    entries: dict[str, dict] = {}
    with tqdm(total=num_videos, unit="clip", disable=not progress) as bar:
        for video_id, entry in _run(jobs, workers):
            entries[video_id] = entry
            bar.update(1)
    database.update(entries)
    write_annotations(out_dir / ANNOTATIONS, database)
    return sorted(entries)


Job = tuple[int, int, str, float | None, str]  # seed, index, split, duration, videos folder


def _run(jobs: list[Job], workers: int) -> Iterator[tuple[str, dict]]:
    if workers == 1:
        yield from map(_render_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_job, jobs)


def _render_job(job: Job) -> tuple[str, dict]:
    seed, index, split, duration, videos = job
    scenario = sample_scenario(seed, index, duration, split)
    write_clip(scenario, Path(videos) / f"{scenario.video_id}.mp4")
    return scenario.video_id, annotation_entry(scenario)
