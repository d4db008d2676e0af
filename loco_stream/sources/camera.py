"""A camera, or anything ``cv2.VideoCapture`` reads live: an index, a device, a URL, a pipe/FIFO.

A reader thread grabs frames as they come and keeps the newest few in a bounded queue; when the
consumer is slower than the camera the oldest frame is dropped (``stats.dropped_frames``).

Timestamps (``CameraSource.timestamps``):
- ``"capture"`` (live sources: indices, devices, URLs, pipes): ``time.monotonic()`` right after
  ``grab()`` returns, on the shared stream clock. OpenCV's ``CAP_PROP_POS_MSEC`` is no use here:
  for an MJPEG pipe it counts frames at an assumed 25 fps.
- ``"media"`` (a regular file): ``CAP_PROP_POS_MSEC``, the file's pts, anchored on the stream clock
  at the first frame. Such a file is read as fast as it decodes; `FileSource` is better for files.

A camera that delivers no frame for ``stall_timeout`` seconds raises `SourceError`, or with
``reconnect=True`` is reopened, up to ``max_reconnects`` times in a row.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from loco_stream.sources.base import MediaSource, SourceError, SourceStats, VideoFrame

log = logging.getLogger(__name__)

QUEUE_FRAMES = 4  # newest frames kept for a slow consumer
OPEN_TIMEOUT_S = 10.0  # a FIFO blocks in open until a writer appears
RETRY_INTERVAL_S = 0.02  # between failed grabs, while waiting for the stream to come back
RECONNECT_DELAY_S = 0.5  # times the attempt number, before reopening
JOIN_TIMEOUT_S = 1.0  # for a reader thread that is stuck in grab()
MAX_PROBED_INDEX = 9  # list_cameras() tries indices 0..9

_END = object()  # reader -> consumer: the file ended
_STALLED = object()  # reader -> consumer: no frame for stall_timeout


class CameraSource(MediaSource):
    """Frames from a camera index, device path, URL or pipe, stamped with their capture time."""

    is_live = True

    def __init__(
        self,
        spec: str | int,
        stall_timeout: float = 3.0,
        reconnect: bool = False,
        max_reconnects: int = 5,
    ) -> None:
        super().__init__()
        self.spec = int(spec) if isinstance(spec, str) and spec.isdigit() else spec
        self.stall_timeout = stall_timeout
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        is_file = isinstance(self.spec, str) and os.path.isfile(self.spec)
        self.timestamps = "media" if is_file else "capture"
        self.has_video, self.has_audio = True, False
        self.description = f"camera '{self.spec}' ({self.timestamps} timestamps)"
        self._closed = threading.Event()
        self._reader = self._open()

    def _open(self) -> _Reader:
        reader = _Reader(self.spec, self.stall_timeout, self.timestamps == "media", self.stats)
        reader.start()
        if not reader.opened.wait(OPEN_TIMEOUT_S):
            reader.stop.set()
            raise SourceError(
                f"camera '{self.spec}' did not open within {OPEN_TIMEOUT_S:.0f} s "
                "(a pipe or FIFO needs a writer; a URL needs a reachable server)"
            )
        if reader.error:
            raise SourceError(
                f"camera '{self.spec}' could not be opened: {reader.error} (check the index with "
                "--list-devices, permissions, or that no other program holds it)"
            )
        return reader

    def close(self) -> None:
        self._closed.set()
        self._reader.stop.set()
        self._reader.join(JOIN_TIMEOUT_S)

    def __iter__(self) -> Iterator[VideoFrame]:
        reader = self._reader
        reader.go.set()
        last_frame = time.monotonic()
        failures = 0  # reconnects since the last frame
        last_t = 0.0
        anchor: float | None = None  # media timestamps: stream time minus pts, per session
        while not self._closed.is_set():
            try:
                item = reader.frames.get(timeout=self.stall_timeout / 4)
            except queue.Empty:
                if time.monotonic() - last_frame < self.stall_timeout:
                    continue
                item = _STALLED  # the reader is stuck inside grab()
            if item is _END or self._closed.is_set():
                return
            if item is _STALLED:
                reader, failures = self._reconnect(reader, failures)
                last_frame, anchor = time.monotonic(), None
                continue
            grabbed_at, pos_ms, image = item
            failures, last_frame = 0, time.monotonic()
            if self.timestamps == "media":
                if anchor is None:
                    anchor = self.clock.stamp(grabbed_at) - pos_ms / 1000
                t = anchor + pos_ms / 1000
            else:
                t = self.clock.stamp(grabbed_at)
            last_t = max(last_t, t)
            self.stats.frames += 1
            yield VideoFrame(last_t, image)

    def _reconnect(self, reader: _Reader, failures: int) -> tuple[_Reader, int]:
        """A new reader for a stalled one, or SourceError when reconnecting is off or exhausted."""
        reader.stop.set()
        while self.reconnect and failures < self.max_reconnects and not self._closed.is_set():
            failures += 1
            log.warning(
                "camera '%s' delivered no frame for %g s; reconnecting (attempt %d of %d)",
                self.spec,
                self.stall_timeout,
                failures,
                self.max_reconnects,
            )
            time.sleep(RECONNECT_DELAY_S * failures)
            try:
                self._reader = self._open()
            except SourceError as err:
                log.warning("%s", err)
                continue
            self._reader.go.set()
            return self._reader, failures
        if self._closed.is_set():
            return reader, failures
        hint = f"gave up after {failures} reconnects" if self.reconnect else "or allow reconnecting"
        raise SourceError(
            f"camera '{self.spec}' stopped delivering frames (none for {self.stall_timeout:g} s); "
            f"check the cable, the stream or its sender ({hint})"
        )


class _Reader(threading.Thread):
    """Opens one capture session, grabs frames into a drop-oldest queue, releases it on stop."""

    def __init__(self, spec: str | int, stall_timeout: float, ends: bool, stats: SourceStats):
        super().__init__(name=f"camera-{spec}", daemon=True)
        self.spec = spec
        self.stall_timeout = stall_timeout
        self.ends = ends  # a file: a failed grab is its end, not a stall
        self.stats = stats
        self.frames: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.opened = threading.Event()
        self.go = threading.Event()
        self.stop = threading.Event()
        self.error = ""

    def run(self) -> None:
        capture = _open_capture(self.spec, self.stall_timeout)
        if not capture.isOpened():
            self.error = "no backend could open it"
            self.opened.set()
            return
        self.opened.set()
        try:
            while not self.stop.is_set():
                if self.go.wait(0.1):
                    self._grab_loop(capture)
                    break
        finally:
            capture.release()

    def _grab_loop(self, capture: cv2.VideoCapture) -> None:
        last_frame = time.monotonic()
        while not self.stop.is_set():
            if capture.grab():
                grabbed_at = time.monotonic()
                ok, image = capture.retrieve()
                if ok and image is not None:
                    pos_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
                    self._put((grabbed_at, pos_ms, _to_rgb(image)))
                    last_frame = grabbed_at
                    continue
            if self.ends:
                self._put(_END)
                return
            if time.monotonic() - last_frame > self.stall_timeout:
                self._put(_STALLED)
                return
            time.sleep(RETRY_INTERVAL_S)

    def _put(self, item: object) -> None:
        while True:
            try:
                self.frames.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.stats.dropped_frames += 1
                except queue.Empty:
                    pass


def _open_capture(spec: str | int, stall_timeout: float) -> cv2.VideoCapture:
    """An index or a device node (/dev/video0) opens with the platform's camera backend; files,
    pipes and URLs with FFmpeg, with its open and read timeouts set."""
    if isinstance(spec, int) or (os.path.exists(spec) and stat.S_ISCHR(os.stat(spec).st_mode)):
        return cv2.VideoCapture(spec)
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(OPEN_TIMEOUT_S * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(stall_timeout * 1000),
    ]
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, timeouts)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_cameras() -> list[str]:
    """Cameras that open, as "index: WxH @ fps" lines (on Linux only indices with /dev/videoN)."""
    found = []
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        for index in range(MAX_PROBED_INDEX + 1):
            if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
                continue
            capture = cv2.VideoCapture(index)
            if capture.isOpened():
                width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                fps = capture.get(cv2.CAP_PROP_FPS)
                backend = capture.getBackendName()
                found.append(f"{index}: {width}x{height} @ {fps:.3g} fps ({backend})")
            capture.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    return found
