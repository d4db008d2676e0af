"""An event's clip, an mp4 of H.264 video and AAC audio written as its items arrive, and the
snapshot taken from it.

The clip is written under a ``.part`` name and renamed when complete, so a file under its final
name is always whole. Items are held HOLD_SECONDS before they are encoded, so that a clip whose
end becomes known late (an end record comes a few seconds after the event) still ends where it
should: items past ``until`` are left out. Video is timed by each frame's stream time (variable
frame rate, ms ticks); audio (16 kHz mono, as the sources hand it out) is laid on one track from
the clip's begin: gaps are filled with silence, overlaps cut.
"""

from __future__ import annotations

import fractions
import math
import os
from collections import deque
from pathlib import Path

import av
import cv2
import numpy as np

from ..sources.base import TARGET_SAMPLE_RATE, AudioBlock, Item, VideoFrame

MILLISECOND = fractions.Fraction(1, 1000)
VIDEO_OPTIONS = {"preset": "ultrafast", "crf": "26"}  # libx264: the least CPU (bigger files)
AUDIO_OPTIONS = {"aac_coder": "fast"}  # FFmpeg's AAC: half the CPU of its default coder
GOP_SECONDS = 2.0  # a keyframe this often: a snapshot decodes at most this much
NOMINAL_FPS = 16  # the rate given to the encoder; frames keep their own times
JPEG_QUALITY = 85
HOLD_SECONDS = 5.0  # items wait this long (of stream time) before they are encoded


class ClipWriter:
    """Writes the items of stream time ``begin`` onwards to ``path`` (an .mp4)."""

    def __init__(self, path: Path, begin: float) -> None:
        self.path = path
        self.begin = begin
        self.partial = path.with_name(path.name + ".part")
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None
        self._size: tuple[int, int] | None = None  # (W, H) of the clip, both even
        self._last_pts = -1  # ms of the last frame written
        self._next_sample = 0  # audio samples written (from begin)
        self._held: deque[Item] = deque()  # items not yet encoded, oldest first

    def add(self, item: Item, until: float = math.inf) -> None:
        """Take one frame or audio block; encode those held HOLD_SECONDS behind it that lie
        between ``begin`` and ``until`` (the clip's end, once known)."""
        self._held.append(item)
        while self._held and self._held[0].t < item.t - HOLD_SECONDS:
            self._encode(self._held.popleft(), until)

    def close(self, until: float = math.inf) -> None:
        """Encode what is held up to ``until``, flush the encoders and give the clip its final
        name; OSError if no frame was written."""
        while self._held:
            self._encode(self._held.popleft(), until)
        if self._container is None:
            raise OSError("no video frame reached the clip")
        for stream in (self._video, self._audio):
            self._mux(stream.encode())
        self._container.close()
        self._container = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the clip (a failure): close what is open, delete the partial file."""
        if self._container is not None:
            try:
                self._container.close()
            except (OSError, av.FFmpegError):
                pass
            self._container = None
        try:
            self.partial.unlink(missing_ok=True)
        except OSError:  # the folder itself is gone or in the way: nothing to delete
            pass

    def _encode(self, item: Item, until: float) -> None:
        if isinstance(item, VideoFrame):
            if item.t <= until:
                self._add_frame(item)
        elif self._container is not None:  # audio waits for the first frame (it sizes the clip)
            keep = len(item.samples)
            if item.t + item.duration > until:  # cut at the clip's end
                keep = max(0, math.ceil((until - item.t) * item.sample_rate))
            if keep:
                self._add_audio(AudioBlock(item.t, item.samples[:keep], item.sample_rate))

    def _open(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        self._size = (max(2, width - width % 2), max(2, height - height % 2))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.partial), "w", format="mp4", options={"movflags": "faststart"})
        self._container = container
        video = container.add_stream("libx264", rate=NOMINAL_FPS, options=VIDEO_OPTIONS)
        video.width, video.height = self._size
        video.pix_fmt = "yuv420p"
        video.time_base = MILLISECOND
        video.codec_context.time_base = MILLISECOND
        video.codec_context.gop_size = round(GOP_SECONDS * NOMINAL_FPS)
        video.codec_context.thread_count = 1
        self._video = video
        self._audio = container.add_stream("aac", rate=TARGET_SAMPLE_RATE, options=AUDIO_OPTIONS)
        self._audio.layout = "mono"

    def _add_frame(self, frame: VideoFrame) -> None:
        pts = round((frame.t - self.begin) * 1000)
        if pts <= self._last_pts or pts < 0:
            return
        image = frame.image
        if self._container is None:
            self._open(image)
        width, height = self._size
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        picture.pts, picture.time_base = pts, MILLISECOND
        self._mux(self._video.encode(picture))
        self._last_pts = pts
        self.frames += 1

    def _add_audio(self, block: AudioBlock) -> None:
        rate = block.sample_rate
        if rate != TARGET_SAMPLE_RATE:
            return  # sources and `Detector` hand out 16 kHz only
        first = round((block.t - self.begin) * rate)
        samples = block.samples
        if first < self._next_sample:  # overlaps what is written (or starts before begin)
            samples = samples[self._next_sample - first :]
            first = self._next_sample
        if not len(samples):
            return
        silence = np.zeros(first - self._next_sample, np.float32)  # a gap
        mono = np.concatenate([silence, samples.astype(np.float32)])[None]  # (1, N)
        sound = av.AudioFrame.from_ndarray(mono, format="flt", layout="mono")
        sound.sample_rate, sound.pts = rate, self._next_sample
        sound.time_base = fractions.Fraction(1, rate)
        self._mux(self._audio.encode(sound))
        self._next_sample += mono.shape[1]

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def write_snapshot(clip: Path, at: float, path: Path) -> None:
    """Save the clip's frame nearest ``at`` seconds into it as a JPEG at ``path``."""
    best: np.ndarray | None = None
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        container.seek(max(0, round(at / video.time_base)), stream=video, backward=True)
        distance = float("inf")
        for frame in container.decode(video):
            gap = abs(float(frame.time) - at)
            if gap > distance:
                break
            best, distance = frame.to_ndarray(format="bgr24"), gap
    if best is None:
        raise OSError(f"no frame in {clip.name}")
    ok, jpeg = cv2.imencode(".jpg", best, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("the JPEG encoder failed")
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(jpeg.tobytes())
    os.replace(partial, path)
