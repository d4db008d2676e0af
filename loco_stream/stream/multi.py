"""Many streams in one process: each keeps its own step assembler, feature ring and stitcher, and
the extractors and the window graph run batched across the streams whose step or hop is due.

    sources ─► one reader thread each (decode, pacing) ─► one queue ─► lane per stream:
          StepAssembler ─► [steps of all lanes: extractors, one call] ─► FeatureRing
          ─► [due windows of all lanes: window graph, one call] ─► decode ─► Stitcher ─► events

API (the CLI, `MultiDetector` and the Ray workers build on it):

    specs = [StreamSpec("door", input=Path("door.mp4")),
             StreamSpec("hall", camera="0", microphone="default", threshold=0.4)]
    engine = MultiStreamEngine(model)        # a ModelDir, a model directory path, or None
    reports = engine.run(specs, on_event, on_end=None, should_stop=lambda: False)
    engine.close()

- ``on_event(StreamEvent)`` gets every event as it is emitted, in the calling thread; a
  `StreamEvent` is ``(stream, event)`` and ``to_record()`` is the event's JSON-lines record
  (docs/output.md) with ``"stream": name`` added. Within a stream the order is the stream's own
  emission order, exactly as `StreamEngine` would emit it.
- ``on_end(StreamReport)`` is called once per stream as it ends (its source ended: ``error`` None),
  fails (a file that cannot be opened or is corrupt, a camera that stopped, one modality stalled:
  ``error`` says what) or is stopped; the other streams go on. ``run`` returns the reports of all
  streams, in ``specs`` order, once every stream has ended or ``should_stop()`` returned True
  (checked about every 0.1 s; then every stream is closed: its open events are emitted).
- Stream names are unique, 1-64 characters of letters, digits, ``.``, ``_``, ``-`` (they name
  files: ``--output-dir DIR`` writes ``DIR/NAME.jsonl``).
- Emission times (``emitted_at``): a file's are its data's (the end of the newest step), paced
  or not, so a file's records are the same on every run; a live source's are its clock's.

Resuming a stream without repeating what was written (the Ray workers restart a dead worker's
streams this way): ``StreamSpec(..., skip_records=N, resume_at=T)``. The stream is read from its
beginning again and computes exactly what it computed before (a file's records do not depend on
timing, pacing or the streams batched with it), but its first ``N`` event records (``start`` and
``end``; count them in what was written) are dropped instead of emitted, and a ``realtime`` file
is read unpaced up to media time ``T`` (catch-up, as fast as the machine goes) and paced from
there. So the records after a resume continue the written ones exactly: none repeated, none lost.
A live source cannot be replayed: it resumes at "now" (``skip_records`` is ignored for it).

The push interface under ``run`` (`MultiDetector` uses it): ``add_stream(name, ...)``,
``push(name, item)`` (assembles steps; work is deferred), ``process()`` (runs what is due for
all streams, batched; returns their events), ``finish(name)`` (closes one stream).
Not thread-safe: one caller at a time.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..features.steps import Step
from ..model_dir import ModelDir
from ..sources import FileSource, MediaSource, ReopeningSource, SourceError
from ..sources.base import Item
from ..sources.file import input_file_problem
from .batched import BatchedModel
from .engine import Clock, StreamEngine, StreamStats, WindowInputs
from .stitch import DEFAULT_THRESHOLD, Event, StitchConfig

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PARTS = ("decode", "assemble", "extract", "window", "stitch")  # the parts of a stream's work
READ_AHEAD_ITEMS = 16  # items a reader may queue ahead of the engine, per stream
POLL_SECONDS = 0.1  # how often run() checks should_stop() while no item comes


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
        read unpaced here: `MultiStreamEngine` paces it (``realtime``)."""
        if not self.live:
            path = self.input
            problem = input_file_problem(path)
            if problem is not None:
                raise SourceError(problem)
            source = FileSource(path)
            for track, present in (("audio", source.has_audio), ("video", source.has_video)):
                if not present:
                    source.close()
                    raise SourceError(
                        f"input file '{path}' has no {track} track: audio-visual events are "
                        "seen and heard, so a stream needs both"
                    )
            return source
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


class _Lane(StreamEngine):
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
        self, window: WindowInputs, scores: np.ndarray, segments: np.ndarray, seconds: float
    ) -> list[Event]:
        """A due window's outputs (N, C), (N, 2), computed in ``seconds``: stitched."""
        began = time.perf_counter()
        self.stats.window_seconds += seconds
        events = self._stitch_window(window, scores, segments)
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


class _Reader(threading.Thread):
    """Reads one source into the engine's queue as (name, item) pairs, then (name, _End)."""

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
            self.out.put((self.stream, _End(None)))
        except Exception as error:  # a source's failure ends its stream, not the others
            self.out.put((self.stream, _End(error)))

    def stop(self) -> None:
        self.stopping = True
        self.source.close()


@dataclass
class _End:
    """A reader's last message: its source ended (None) or failed."""

    error: Exception | None


@dataclass
class _Running:
    """A stream of ``run``: its spec, source, reader and lane."""

    spec: StreamSpec
    source: MediaSource
    reader: _Reader
    lane: _Lane


class MultiStreamEngine:
    """Many streams on one model, batched (module docstring).

    ``model``: a `ModelDir` (not closed here), a model directory path or None (the packaged
    default model), opened on ``backend`` with ``threads`` CPU threads per graph. ``batched``
    False runs the batch-1 graphs once per stream even where batched graphs exist. ``hop`` as
    `StreamEngine`'s, for every stream.
    """

    def __init__(
        self,
        model: str | Path | ModelDir | None = None,
        backend: str = "onnxruntime",
        threads: int = 2,
        hop: int | None = None,
        batched: bool = True,
    ) -> None:
        self.model = BatchedModel(model, backend, threads, batched)
        self.hop = hop
        try:
            StreamEngine(self.model, hop=hop)  # type: ignore[arg-type]  # checks hop
        except ValueError:
            self.model.close()
            raise
        self._lanes: dict[str, _Lane] = {}

    @property
    def description(self) -> str:
        return self.model.description

    @property
    def streams(self) -> list[str]:
        """The names of the open streams."""
        return list(self._lanes)

    # -- push interface ------------------------------------------------------------------------

    def add_stream(
        self,
        name: str,
        threshold: float = DEFAULT_THRESHOLD,
        clock: Clock | None = None,
        skip_records: int = 0,
    ) -> StreamEngine:
        """Open a stream; ``clock`` gives a live source's emission times. Returns the stream's
        own engine (its ``stats``; its ``push`` defers the steps to ``process()``)."""
        check_stream_name(name)
        if name in self._lanes:
            raise ValueError(f"a stream named '{name}' is already open")
        stitch = StitchConfig(threshold=threshold)
        lane = _Lane(name, self.model, stitch, self.hop, clock, skip_records)
        self._lanes[name] = lane
        return lane

    def push(self, name: str, item: Item) -> list[StreamEvent]:
        """Add one item to stream ``name``: steps are assembled, their extraction waits for
        ``process()``; returns the events a restart of the stream (a long gap) emitted."""
        lane = self._lane(name)
        began = time.perf_counter()
        events = lane.push(item)
        lane.assemble_seconds += time.perf_counter() - began
        return self._events(lane, events)

    def process(self) -> list[StreamEvent]:
        """Run the extractors on every stream's complete steps and the window graph on every due
        window, one call each (per batch); returns the events, stream by stream."""
        lanes = [lane for lane in self._lanes.values() if lane.pending]
        if not lanes:
            return []
        steps = [step for lane in lanes for step in lane.pending]
        began = time.perf_counter()
        visual, audio = self.model.features(steps)  # (S, Dv), (S, Da)
        per_step = (time.perf_counter() - began) / len(steps)
        due: list[tuple[_Lane, WindowInputs]] = []
        row = 0
        for lane in lanes:
            count = len(lane.pending)
            rows = slice(row, row + count)
            windows = lane.take_features(visual[rows], audio[rows], per_step * count)
            due += [(lane, window) for window in windows]
            row += count
        events: list[StreamEvent] = []
        for lane, window in due:  # step graph: run per stream as its steps came in
            if window.outputs is not None:
                events += self._events(lane, lane.take_window(window, *window.outputs, 0.0))
        due = [(lane, window) for lane, window in due if window.outputs is None]
        if not due:
            return events
        inputs = [np.concatenate(parts) for parts in zip(*(w.inputs for _, w in due), strict=True)]
        began = time.perf_counter()
        scores, segments = self.model.windows(*inputs)  # (W, N, C), (W, N, 2)
        per_window = (time.perf_counter() - began) / len(due)
        for row, (lane, window) in enumerate(due):
            found = lane.take_window(window, scores[row], segments[row], per_window)
            events += self._events(lane, found)
        return events

    def take_stall(self, name: str) -> Exception | None:
        """A stall of stream ``name`` (one modality stopped) that began since the last call."""
        return self._lane(name).take_stall()

    def finish(self, name: str) -> list[StreamEvent]:
        """End stream ``name``: its last steps and windows, its open events closed; it is gone."""
        lane = self._lanes.pop(name, None)
        if lane is None:
            return []
        return self._events(lane, lane.finish())

    def _lane(self, name: str) -> _Lane:
        try:
            return self._lanes[name]
        except KeyError:
            raise ValueError(f"no open stream named '{name}'") from None

    @staticmethod
    def _events(lane: _Lane, events: list[Event]) -> list[StreamEvent]:
        return [StreamEvent(lane.name, event) for event in lane.released(events)]

    # -- sources -------------------------------------------------------------------------------

    def run(
        self,
        specs: list[StreamSpec],
        on_event: Callable[[StreamEvent], None],
        on_end: Callable[[StreamReport], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_start: Callable[[str, str], None] | None = None,
        lag_from: float = 0.0,
    ) -> list[StreamReport]:
        """Stream every spec's source until each has ended or ``should_stop()`` (module
        docstring); ``on_start(name, description)`` as each source opens. A report's
        ``max_lag`` counts the steps ending after ``lag_from`` seconds of stream (a warm-up).
        Returns the reports in ``specs`` order."""
        names = [spec.name for spec in specs]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"stream names must be unique; repeated: {', '.join(duplicated)}")
        clash = sorted(set(names) & set(self._lanes))
        if clash:
            raise ValueError(f"streams already open under these names: {', '.join(clash)}")
        inbox: queue.Queue = queue.Queue()
        reports: dict[str, StreamReport] = {}
        running: dict[str, _Running] = {}

        def end(name: str, error: str | None = None, stopped: bool = False) -> None:
            stream = running.pop(name)
            stream.reader.stop()
            for event in self.finish(name):
                on_event(event)
            lane = stream.lane
            stream.source.close()
            lane.stats.dropped_frames = stream.source.stats.dropped_frames
            lane.stats.audio_overflows = stream.source.stats.overflows
            lane.stats.wall_seconds = time.perf_counter() - started
            stream.reader.join(timeout=1.0)  # its CPU time is counted as it exits
            parts = [stream.reader.cpu_seconds, lane.assemble_seconds, lane.stats.extract_seconds]
            parts += [lane.stats.window_seconds, lane.stitch_seconds]
            report = StreamReport(
                name,
                lane.stats,
                error,
                stopped,
                lane.max_lag,
                stream.source.description,
                parts=dict(zip(PARTS, parts, strict=True)),
            )
            if error is None and lane.stats.steps == 0 and not stopped:
                report.error = (
                    f"{stream.source.description} ended after {lane.stats.audio_seconds:.2f} s "
                    f"of audio and {lane.stats.frames} frames, before one step had both"
                )
            reports[name] = report
            if on_end is not None:
                on_end(report)

        started = time.perf_counter()
        try:
            for spec in specs:
                try:
                    source = spec.open()
                except (SourceError, OSError) as error:
                    reports[spec.name] = StreamReport(
                        spec.name, StreamStats(), str(error), opened=False
                    )
                    if on_end is not None:
                        on_end(reports[spec.name])
                    continue
                pace = spec.realtime and not spec.live
                reader = _Reader(spec.name, source, pace, spec.resume_at, inbox)
                clock = source.clock.now if source.is_live else None
                skip = 0 if spec.live else spec.skip_records
                self.add_stream(spec.name, spec.threshold, clock, skip)
                self._lanes[spec.name].lag_after = lag_from
                running[spec.name] = _Running(spec, source, reader, self._lanes[spec.name])
                if on_start is not None:
                    on_start(spec.name, source.description)
            for stream in running.values():
                stream.reader.start()
            while running and not should_stop():
                try:
                    messages = [inbox.get(timeout=POLL_SECONDS)]
                except queue.Empty:
                    continue
                while True:  # everything that arrived meanwhile: bigger batches under load
                    try:
                        messages.append(inbox.get_nowait())
                    except queue.Empty:
                        break
                for name, message in messages:
                    if name not in running:
                        continue  # ended already (a stall), its reader was still queueing
                    stream = running[name]
                    if isinstance(message, _End):
                        error = message.error
                        end(name, None if error is None else _error_text(error))
                        continue
                    stream.reader.credit.release()
                    if stream.lane.origin is None:
                        stream.lane.origin = _origin(stream)
                    for event in self.push(name, message):
                        on_event(event)
                    stall = self.take_stall(name)
                    if stall is not None:
                        end(name, f"{stall} (the events so far were closed and written)")
                for event in self.process():
                    on_event(event)
        finally:
            for name in list(running):
                end(name, stopped=True)
        return [reports[name] for name in names]

    def close(self) -> None:
        """Close the model (open streams are dropped without closing their events)."""
        self._lanes.clear()
        self.model.close()

    def __enter__(self) -> MultiStreamEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _origin(stream: _Running) -> float | None:
    """Monotonic time of the stream's t=0, to measure lag: a live source's clock origin, a paced
    file's pacing origin; None for an unpaced file (it has no real time to lag behind)."""
    if stream.source.is_live:
        return stream.source.clock.origin
    return stream.reader.origin


def _error_text(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, SourceError) else f"{type(error).__name__}: {text}"
