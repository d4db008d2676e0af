"""One stream of `MultiStreamEngine` (``loco_stream.stream.multi``): what it is (`StreamSpec`), its
state inside the engine (`Lane`) and its reader thread (`Reader`), and what it gives back
(`StreamEvent`, `StreamReport`).

Resuming a stream without repeating what was written (the Ray workers restart a dead worker's
streams this way): ``StreamSpec(..., skip_records=N, resume_at=T)``. The stream is read from its
beginning again and computes exactly what it computed before (a file's records do not depend on
timing, pacing or the streams batched with it), but its first ``N`` event records (``start`` and
``end``; count them in what was written) are dropped instead of emitted, and a ``realtime`` file
is read unpaced up to media time ``T`` (catch-up, as fast as the machine goes) and paced from
there. So the records after a resume continue the written ones exactly: none repeated, none lost.
A live source cannot be replayed: it resumes at "now" (``skip_records`` is ignored for it).
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..features.steps import Step
from ..sources import MediaSource, ReopeningSource, SourceError
from ..sources.file import input_file_problem, open_audio_visual
from .batched import BatchedModel
from .engine import Clock, StreamEngine, StreamStats, WindowInputs
from .stitch import DEFAULT_THRESHOLD, Event, StitchConfig

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PARTS = ("decode", "assemble", "extract", "window", "stitch")  # the parts of a stream's work
READ_AHEAD_ITEMS = 16  # items a reader may queue ahead of the engine, per stream
POLL_SECONDS = 0.1  # how often a waiting reader, and the engine's run(), check for a stop


def check_stream_name(name: object) -> str:
    """``name`` if it can name a stream (and its output file), else a ValueError saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"stream name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it names the stream's output file)"
        )
    return name


@dataclass(frozen=True)
class StreamSpec:
    """One stream: a video file with audio (``input``), or a ``camera`` with a ``microphone``.

    ``realtime`` paces a file at real time; ``reconnect`` reopens a live source that stops;
    ``skip_records`` and ``resume_at`` resume a stream (module docstring).
    """

    name: str
    input: Path | None = None
    camera: str | None = None
    microphone: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    realtime: bool = False
    reconnect: bool = False
    skip_records: int = 0
    resume_at: float = 0.0

    def __post_init__(self) -> None:
        check_stream_name(self.name)
        live = self.camera is not None or self.microphone is not None
        if live == (self.input is not None):
            raise ValueError(f"stream '{self.name}': give a file, or a camera and a microphone")
        if live and (self.camera is None or self.microphone is None):
            raise ValueError(
                f"stream '{self.name}': a camera and a microphone go together (audio-visual "
                "events are seen and heard)"
            )
        if self.input is not None:
            object.__setattr__(self, "input", Path(self.input))
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ValueError(f"stream '{self.name}': threshold must be a number in [0, 1]")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"stream '{self.name}': threshold {self.threshold} is not in [0, 1]")
        if not isinstance(self.skip_records, int) or self.skip_records < 0:
            raise ValueError(f"stream '{self.name}': skip_records must be a whole number >= 0")
        if not (math.isfinite(self.resume_at) and self.resume_at >= 0):
            raise ValueError(f"stream '{self.name}': resume_at must be finite seconds >= 0")

    @property
    def live(self) -> bool:
        return self.camera is not None

    def open(self) -> MediaSource:
        """The stream's source, opened; `SourceError` saying what is wrong otherwise. A file is
        read unpaced here: its `Reader` paces it (``realtime``)."""
        if not self.live:
            path = self.input
            problem = input_file_problem(path)
            if problem is not None:
                raise SourceError(problem)
            return open_audio_visual(path)
        return ReopeningSource(self.camera, self.microphone, self.reconnect)


@dataclass(frozen=True)
class StreamEvent:
    """An event of the stream named ``stream``."""

    stream: str
    event: Event

    def to_record(self) -> dict:
        """The event's JSON-lines record with the stream's name."""
        return {"stream": self.stream, **self.event.to_record()}


@dataclass
class StreamReport:
    """How one stream ended: ``error`` None when its source ended (or it was stopped)."""

    name: str
    stats: StreamStats
    error: str | None = None
    stopped: bool = False  # ended by should_stop(), not by its source
    max_lag: float | None = None  # s, of a paced or live stream: steps done behind their time
    description: str = ""  # the source, in words
    opened: bool = True  # False: the source could not be opened (``error`` says why)
    parts: dict[str, float] = field(default_factory=dict)  # s of work by part (PARTS)

    def to_record(self, emitted_at: float) -> dict:
        """The stream's stats record (docs/output.md) with its name, lag and error."""
        record = {"stream": self.name, **self.stats.to_record(emitted_at)}
        if self.max_lag is not None:
            record["max_lag"] = round(self.max_lag, 3)
        if self.error is not None:
            record["error"] = self.error
        return record


class Lane(StreamEngine):
    """One stream inside `MultiStreamEngine`: a `StreamEngine` whose steps and windows wait for
    the engine's batched calls (``pending``, ``due``) while it is deferring, and run at once when
    the stream restarts or ends (so it computes what `StreamEngine` computes, in its order)."""

    def __init__(
        self,
        name: str,
        model: BatchedModel,
        stitch: StitchConfig,
        hop: int | None,
        clock: Clock | None,
        skip_records: int,
    ) -> None:
        super().__init__(model, stitch, hop, clock)  # type: ignore[arg-type]  # ModelDir-like
        self.name = name
        self.pending: list[Step] = []  # complete steps waiting for the extractors
        self.deferring = True
        self.skip_records = skip_records  # event records still to drop (a resumed stream)
        self.origin: float | None = None  # monotonic time of stream time 0, when paced or live
        self.max_lag: float | None = None
        self.lag_after = 0.0  # stream time from which lag counts (a warm-up left out)
        self.assemble_seconds = 0.0  # in push: timeline, step assembly (frames resized)
        self.stitch_seconds = 0.0  # decoding windows' outputs and stitching them

    def _process(self, steps: Iterable[Step]) -> list[Event]:
        if self.deferring:
            self.pending.extend(steps)
            self._take_gap_stats()
            return []
        return super()._process(steps)

    def _close_stream(self) -> list[Event]:
        """A restart or the end: the deferred steps first, then as `StreamEngine` does."""
        deferring, self.deferring = self.deferring, False
        try:
            steps, self.pending = self.pending, []
            return super()._process(steps) + super()._close_stream()
        finally:
            self.deferring = deferring

    def take_features(
        self, visual: np.ndarray, audio: np.ndarray, seconds: float
    ) -> list[WindowInputs]:
        """The pending steps' features (S, Dv), (S, Da), computed in ``seconds`` (its share of the
        batch): into the ring; the windows that became due, in order."""
        due = []
        for row, step in enumerate(self.pending):
            if self._add_features(step.index, visual[row], audio[row]):
                began = time.perf_counter()
                window = self._window_inputs()
                if window.outputs is not None:  # the step graph ran: compute of this stream
                    self.stats.compute_seconds += time.perf_counter() - began
                due.append(window)
            self._note_lag((step.index + 1) * self.model.info.step_seconds)
        self.stats.extract_seconds += seconds
        self.stats.compute_seconds += seconds
        self.pending = []
        return due

    def take_window(
        self,
        window: WindowInputs,
        scores: np.ndarray,
        segments: np.ndarray,
        positions: np.ndarray,
        seconds: float,
    ) -> list[Event]:
        """A due window's outputs (N, C), (N, 2) of points at positions (N,), computed in
        ``seconds``: stitched."""
        began = time.perf_counter()
        self.stats.window_seconds += seconds
        events = self._stitch_window(window, scores, segments, positions)
        stitching = time.perf_counter() - began
        self.stitch_seconds += stitching
        self.stats.compute_seconds += seconds + stitching
        self._note_lag(window.next_step * self.model.info.step_seconds)
        return events

    def _note_lag(self, step_end: float) -> None:
        if self.origin is not None and step_end > self.lag_after:
            lag = time.monotonic() - (self.origin + step_end)
            self.max_lag = lag if self.max_lag is None else max(self.max_lag, lag)

    def released(self, events: list[Event]) -> list[Event]:
        """``events`` less the records a resumed stream already wrote."""
        skip = min(self.skip_records, len(events))
        self.skip_records -= skip
        return events[skip:]


class Reader(threading.Thread):
    """Reads one source into the engine's queue as (name, item) pairs, then (name, SourceEnded)."""

    def __init__(
        self, name: str, source: MediaSource, pace: bool, resume_at: float, out: queue.Queue
    ) -> None:
        super().__init__(name=f"loco-reader-{name}", daemon=True)
        self.stream, self.source, self.pace, self.resume_at = name, source, pace, resume_at
        self.out = out
        self.credit = threading.Semaphore(READ_AHEAD_ITEMS)  # released as the engine takes items
        self.origin: float | None = None  # monotonic time of stream time 0 once paced
        self.stopping = False
        self.cpu_seconds = 0.0  # this thread's CPU time: decoding, mostly

    def run(self) -> None:
        try:
            self._read()
        finally:
            self.cpu_seconds = time.thread_time()

    def _read(self) -> None:
        try:
            for item in self.source:
                if self.pace and item.t >= self.resume_at:
                    if self.origin is None:
                        self.origin = time.monotonic() - item.t
                    delay = self.origin + item.t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                while not self.credit.acquire(timeout=POLL_SECONDS):
                    if self.stopping:
                        return
                if self.stopping:
                    return
                self.out.put((self.stream, item))
            self.out.put((self.stream, SourceEnded(None)))
        except Exception as error:  # a source's failure ends its stream, not the others
            self.out.put((self.stream, SourceEnded(error)))

    def stop(self) -> None:
        self.stopping = True
        self.source.close()


@dataclass
class SourceEnded:
    """A reader's last message: its source ended (``error`` None) or failed."""

    error: Exception | None
