"""A media file read with PyAV: video and audio with their own pts, interleaved in time order.

Times are the container's pts (``pts * time_base``) relative to the first sample of either
stream, so variable frame rates and gaps come through as they are. By default the file is read
as fast as it decodes; ``realtime=True`` releases each item when the wall clock reaches it, and
then places the file on the shared stream clock (its t=0 is the moment the first item went out).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from loco_stream.sources.base import (
    AudioBlock,
    Interleaver,
    Item,
    MediaSource,
    MonoResampler,
    SourceError,
    VideoFrame,
)

log = logging.getLogger(__name__)

MAX_PENDING_ITEMS = 64  # per kind, while waiting for the other kind to catch up (bad interleaving)
TRUNCATION_TOLERANCE_S = 0.5  # a file ending this much before its header's duration is truncated
INTEGER_SCALES = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63}


def input_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a stream's input file (None: it can): missing, a folder, or not a
    regular file (a device, a named pipe, a socket: live sources go to ``--camera``)."""
    if path.is_dir():
        return f"'{path}' is a folder: give one video file (loco-detect runs over many files)"
    if not path.exists():
        return f"'{path}' does not exist: check the path"
    if not path.is_file():
        return (
            f"'{path}' is not a regular file (a device, a named pipe or a socket): give a video "
            "file; a live device or pipe is a --camera SPEC with a --mic"
        )
    return None


def open_audio_visual(path: Path, realtime: bool = False, needs: str = "a stream") -> FileSource:
    """``path`` opened as a stream's input; `SourceError` if it lacks an audio or a video track
    (``needs``: who needs both, for the message)."""
    source = FileSource(path, realtime=realtime)
    for track, present in (("audio", source.has_audio), ("video", source.has_video)):
        if not present:
            source.close()
            raise SourceError(
                f"input file '{path}' has no {track} track: audio-visual events are seen and "
                f"heard, so {needs} needs both"
            )
    return source


class FileSource(MediaSource):
    """Decode a video/audio file; ``has_audio`` is False for a file without an audio track."""

    def __init__(self, path: str | Path, realtime: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.realtime = self.is_live = realtime
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as err:
            raise SourceError(
                f"media file '{self.path}' could not be read: {err} "
                "(check the path, and that it is a video or audio file FFmpeg can decode)"
            ) from err
        self._video = next(iter(self._container.streams.video), None)
        self._audio = next(iter(self._container.streams.audio), None)
        if self._video is None and self._audio is None:
            self._container.close()
            raise SourceError(f"media file '{self.path}' has neither a video nor an audio stream")
        self.has_video = self._video is not None
        self.has_audio = self._audio is not None
        self.description = f"file '{self.path}' ({self._describe_streams()})"
        self._lock = threading.Lock()  # guards the container between the iterator and close()
        self._closed = False

    def _describe_streams(self) -> str:
        parts = []
        if self._video is not None:
            rate = self._video.average_rate
            fps = f" @ {float(rate):.3g} fps" if rate else ""
            parts.append(f"video {self._video.width}x{self._video.height}{fps}")
        if self._audio is not None:
            rate, channels = self._audio.sample_rate, self._audio.channels
            parts.append(f"audio {rate} Hz x{channels}")
        else:
            parts.append("no audio")
        return ", ".join(parts)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()

    def __iter__(self) -> Iterator[Item]:
        ordered = Interleaver([VideoFrame, AudioBlock], MAX_PENDING_ITEMS)
        for kind, present in ((VideoFrame, self.has_video), (AudioBlock, self.has_audio)):
            if not present:
                ordered.finish(kind)
        start: float | None = None  # monotonic time of t=0 when paced
        offset = 0.0  # file time -> stream time
        for item in self._decoded(ordered):
            if self.realtime:
                if start is None:
                    start = time.monotonic()
                    offset = self.clock.stamp(start)
                delay = start + item.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                item.t += offset
            if isinstance(item, VideoFrame):
                self.stats.frames += 1
            else:
                self.stats.audio_seconds += item.duration
            yield item

    def _decoded(self, ordered: Interleaver) -> Iterator[Item]:
        """Items in time order: decoded per packet, released through ``ordered``."""
        streams = [s for s in (self._video, self._audio) if s is not None]
        origin = min(_start_seconds(s) for s in streams)
        resampler = MonoResampler(self._audio.sample_rate) if self._audio is not None else None
        packets = self._container.demux(*streams)
        skipped: list[float] = []  # times of the packets that could not be decoded
        try:
            yield from self._demuxed(ordered, packets, resampler, origin, skipped)
        finally:
            if skipped:
                where = f"between {skipped[0]:.2f} and {skipped[-1]:.2f} s"
                log.warning(
                    "%s: skipped %d undecodable packet(s) %s (damaged data); the rest of the "
                    "file was used",
                    self.path,
                    len(skipped),
                    where if len(skipped) > 1 else f"at {skipped[0]:.2f} s",
                )

    def _demuxed(
        self,
        ordered: Interleaver,
        packets: Iterator[av.Packet],
        resampler: MonoResampler | None,
        origin: float,
        skipped: list[float],
    ) -> Iterator[Item]:
        """`_decoded`'s loop; ``skipped`` gets the time of each packet that cannot be decoded."""
        last_video_t = 0.0
        end_t = 0.0
        damaged = False
        while True:
            with self._lock:
                if self._closed:
                    return
                try:
                    packet = next(packets, None)
                except av.FFmpegError as err:
                    warnings.warn(
                        f"media file '{self.path}' is damaged or truncated after {end_t:.2f} s "
                        f"({err}); stopping there",
                        stacklevel=2,
                    )
                    damaged, packet = True, None
                if packet is None:
                    break
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    skipped.append(end_t)
                    frames = []
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    if frame.time is not None:  # else: no pts, keep the previous frame's time
                        last_video_t = max(last_video_t, frame.time - origin)
                    end_t = max(end_t, last_video_t)
                    image = _rgb(frame)
                    ordered.push(VideoFrame, VideoFrame(last_video_t, image))
                elif resampler is not None:
                    t = frame.time - origin if frame.time is not None else None
                    block = resampler.push(_float_samples(frame), t)
                    if block is not None:
                        end_t = max(end_t, block.t + block.duration)
                        ordered.push(AudioBlock, block)
            yield from ordered.ready()
        if resampler is not None:
            block = resampler.flush()
            if block is not None:
                ordered.push(AudioBlock, block)
        ordered.finish(VideoFrame)
        ordered.finish(AudioBlock)
        yield from ordered.ready()
        if not damaged:
            self._check_complete(end_t)

    def _check_complete(self, end_t: float) -> None:
        """Warn when the file ended well before the duration its header announces."""
        duration = self._container.duration
        if duration is None:
            return
        expected = duration / av.time_base
        if end_t < expected - max(TRUNCATION_TOLERANCE_S, 0.05 * expected):
            warnings.warn(
                f"media file '{self.path}' ended at {end_t:.2f} s but announces {expected:.2f} s; "
                "it seems truncated",
                stacklevel=3,
            )


def _start_seconds(stream: av.stream.Stream) -> float:
    """The stream's first pts in seconds (0 when the container does not say)."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _float_samples(frame: av.AudioFrame) -> np.ndarray:
    """The frame's samples as float32 (samples, channels) in [-1, 1], whatever its sample format."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.T  # (channels, samples) -> (samples, channels)
    else:
        data = data.reshape(-1, channels)  # (1, samples * channels), interleaved
    scale = INTEGER_SCALES.get(frame.format.name.rstrip("p"))
    if scale is None:
        return data.astype(np.float32, copy=False)
    if frame.format.name.startswith("u8"):
        return ((data.astype(np.float32) - 128.0) / scale).astype(np.float32)
    return (data / scale).astype(np.float32)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB. yuv420p (nearly every file) is converted by OpenCV, about 15x faster
    than swscale's rgb24 path here; other pixel formats go through swscale."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")
