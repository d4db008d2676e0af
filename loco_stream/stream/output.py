"""Where events go: a JSON-lines file (docs/output.md), the terminal, a live overlay window.

The JSON-lines file gets one record a line, each written whole with a single ``write`` and
flushed to the OS as it is made, so a reader tailing the file never sees half a line, and a
process killed at any moment leaves only whole lines behind. The file is held with an exclusive
OS lock (``flock``; ``msvcrt.locking`` on Windows) while it is written: a second writer of the
same file gets `OutputInUse` before anything is truncated.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .stitch import Event

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

OVERLAY_WINDOW = "loco-stream"
OVERLAY_HEIGHT = 480  # px, frames are scaled to this height
OVERLAY_INTERVAL_S = 1 / 30  # redraw at most this often
OVERLAY_RECENT_S = 5.0  # ended events stay on screen this long
QUIT_KEYS = (ord("q"), 27)  # q, Esc


class OutputInUse(Exception):
    """The output file is being written by another process."""


class OutputFailed(Exception):
    """A record could not be written (a full disk, a lost permission, an I/O error): the file
    holds the whole records before it, and the writer takes no more."""


class JsonlWriter:
    """Writes records to ``path`` (replacing it), one whole line per ``os.write``, holding the
    file's exclusive lock until closed. A write that fails part-way is cut back to the last whole
    line and raises `OutputFailed`; so does every write after it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            _lock_exclusively(self._fd)
        except OSError:
            self.close()
            raise OutputInUse(
                f"'{self.path}' is being written by another process (it holds the file's lock); "
                "write to another file"
            ) from None
        os.ftruncate(self._fd, 0)  # only once the file is ours
        self.records = 0  # whole records written
        self._size = 0  # bytes of those records
        self.failure: OutputFailed | None = None

    def write(self, record: dict) -> None:
        if self.failure is not None:
            raise self.failure
        data = (json.dumps(record) + "\n").encode()
        line = memoryview(data)
        try:
            while line:  # a regular file takes it in one write; a full disk may take less
                line = line[os.write(self._fd, line) :]
        except OSError as error:
            with contextlib.suppress(OSError):  # drop the part-written line, if the OS lets us
                os.ftruncate(self._fd, self._size)
            self.failure = OutputFailed(
                f"cannot write '{self.path}': {error.strerror}; it keeps the {self.records} "
                "whole records before (free space or fix the permission, then run again)",
            )
            raise self.failure from None
        self._size += len(data)
        self.records += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lock_exclusively(fd: int) -> None:
    """Take the file's exclusive lock without waiting (OSError when another process holds it)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def event_line(event: Event) -> str:
    """``[  19.50s] END   #7 dog barking  12.25–18.50 s  (0.87)``: one readable line."""
    when = f"[{event.emitted_at:8.2f}s]"
    if event.type == "end":
        span = f"{event.start:.2f}–{event.end:.2f} s"
    else:
        span = f"from {event.start:.2f} s"
    return f"{when} {event.type.upper():<5} #{event.id} {event.label}  {span}  ({event.score:.2f})"


def print_event(event: Event) -> None:
    print(event_line(event), flush=True)


def overlay_unavailable() -> str | None:
    """Why an overlay window cannot be shown here, or None when it can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    import cv2

    try:
        cv2.namedWindow(OVERLAY_WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        return (
            "this OpenCV has no GUI support (opencv-python-headless); "
            "install opencv-python for --show"
        )
    return None


class Overlay:
    """An OpenCV window with the newest frame, the open events and the recently ended ones."""

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._open: dict[int, Event] = {}
        self._ended: list[Event] = []
        self._drawn_at = 0.0
        self.quit = False  # the user pressed q or Esc

    def on_event(self, event: Event) -> None:
        if event.type == "start":
            self._open[event.id] = event
        else:
            self._open.pop(event.id, None)
            self._ended.append(event)

    def show(self, image: np.ndarray, t: float) -> None:
        """Draw ``image`` (H, W, 3) RGB at stream time ``t`` with the events; throttled."""
        if time.monotonic() - self._drawn_at < OVERLAY_INTERVAL_S:
            return
        cv2 = self._cv2
        self._drawn_at = time.monotonic()
        scale = OVERLAY_HEIGHT / image.shape[0]
        frame = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        frame = np.ascontiguousarray(frame[:, :, ::-1])  # RGB -> BGR
        self._ended = [e for e in self._ended if t - e.emitted_at < OVERLAY_RECENT_S]
        lines = [(f"{t:7.2f} s", (255, 255, 255))]
        lines += [
            (f"NOW  #{e.id} {e.label} ({e.score:.2f})", (0, 255, 0)) for e in self._open.values()
        ]
        lines += [
            (f"DONE #{e.id} {e.label} {e.start:.1f}-{e.end:.1f} s", (0, 200, 255))
            for e in self._ended
        ]
        for row, (text, colour) in enumerate(lines):
            origin = (8, 22 + 20 * row)
            cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
            cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        cv2.imshow(OVERLAY_WINDOW, frame)
        if cv2.waitKey(1) & 0xFF in QUIT_KEYS:
            self.quit = True

    def close(self) -> None:
        self._cv2.destroyAllWindows()
