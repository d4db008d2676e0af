"""An event's clip, an mp4 of H.264 video and AAC audio written as its items arrive, and the
snapshot taken from its frames.

The clip is written under a ``.part`` name and renamed when complete, so a file under its final
name is always whole. Items are held HOLD_SECONDS before they are encoded, so that a clip whose
end becomes known late (an end record comes a few seconds after the event) still ends where it
should: items past ``until`` are left out. Video is timed by each frame's stream time (variable
frame rate, ms ticks); audio (16 kHz mono, as the sources hand it out) is laid on one track from
the clip's begin: gaps are filled with silence, overlaps cut, and it is encoded in chunks of
AUDIO_CHUNK_SECONDS (the AAC encoder's cost is mostly per call). The writer keeps at most
MAX_STILLS of the clip's frames, evenly spread, for its snapshot: no decoding afterwards.
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
# libx264: the least CPU (bigger files); zerolatency: no lookahead or B-frames (15% less CPU)
VIDEO_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "crf": "26"}
AUDIO_OPTIONS = {"aac_coder": "fast"}  # FFmpeg's AAC: half the CPU of its default coder
GOP_SECONDS = 2.0  # a keyframe this often: a snapshot decodes at most this much
NOMINAL_FPS = 16  # the rate given to the encoder; frames keep their own times
JPEG_QUALITY = 85
HOLD_SECONDS = 5.0  # items wait this long (of stream time) before they are encoded
AUDIO_CHUNK_SECONDS = 0.5  # audio goes to the encoder in chunks this long
MAX_STILLS = 32  # frames kept for the snapshot
FIRST_STILL_SPACING = 0.125  # s between stills, doubled whenever MAX_STILLS would be exceeded


class ClipWriter:
    """Writes the items of stream time ``begin`` onwards to ``path`` (an .mp4), at most
    ``max_fps`` frames a second (None: every frame)."""

    def __init__(self, path: Path, begin: float, max_fps: float | None = None) -> None:
        self.path = path
        self.begin = begin
        self._min_gap_ms = 0 if max_fps is None else 1000 / max_fps  # between frames written
        self.partial = path.with_name(path.name + ".part")
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None
        self._size: tuple[int, int] | None = None  # (W, H) of the clip, both even
        self._last_pts = -1  # ms of the last frame written
        self._next_sample = 0  # audio samples encoded or pending (from begin)
        self._pending_audio: list[np.ndarray] = []  # (n,) float32 each, not yet encoded
        self._pending_samples = 0
        self._held: deque[Item] = deque()  # items not yet encoded, oldest first
        self._stills: list[tuple[float, np.ndarray]] = []  # (s into the clip, RGB image)
        self._still_spacing = FIRST_STILL_SPACING

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
        self._flush_audio()
        for stream in (self._video, self._audio):
            self._mux(stream.encode())
        self._container.close()
        self._container = None
        os.replace(self.partial, self.path)

    def write_snapshot(self, at: float, path: Path) -> None:
        """Save the kept frame nearest ``at`` seconds into the clip as a JPEG at ``path``."""
        if not self._stills:
            raise OSError(f"no frame in {self.path.name}")
        _, image = min(self._stills, key=lambda still: abs(still[0] - at))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("the JPEG encoder failed")
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(jpeg.tobytes())
        os.replace(partial, path)

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
        if pts < 0 or pts <= self._last_pts:
            return
        if self.frames and pts - self._last_pts < self._min_gap_ms - 0.5:  # over max_fps
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
        self._keep_still(pts / 1000, image)

    def _keep_still(self, at: float, image: np.ndarray) -> None:
        """Keep ``image`` if it lies a spacing past the last still; thin the stills to every
        other one (and double the spacing) when there are too many."""
        if self._stills and at - self._stills[-1][0] < self._still_spacing:
            return
        self._stills.append((at, image))
        if len(self._stills) > MAX_STILLS:
            self._stills = self._stills[::2]
            self._still_spacing *= 2

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
        if first > self._next_sample:  # a gap
            self._pending_audio.append(np.zeros(first - self._next_sample, np.float32))
        self._pending_audio.append(samples.astype(np.float32))
        self._pending_samples += first - self._next_sample + len(samples)
        self._next_sample = first + len(samples)
        if self._pending_samples >= AUDIO_CHUNK_SECONDS * rate:
            self._flush_audio()

    def _flush_audio(self) -> None:
        """Encode the pending audio as one frame."""
        if not self._pending_samples:
            return
        mono = np.concatenate(self._pending_audio)[None]  # (1, N)
        sound = av.AudioFrame.from_ndarray(mono, format="flt", layout="mono")
        sound.sample_rate = TARGET_SAMPLE_RATE
        sound.pts = self._next_sample - self._pending_samples
        sound.time_base = fractions.Fraction(1, TARGET_SAMPLE_RATE)
        self._mux(self._audio.encode(sound))
        self._pending_audio, self._pending_samples = [], 0

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)
