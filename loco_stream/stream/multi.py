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

This module is the scheduling: which streams' steps and windows go into each batched call.
Each stream's own state (its `Lane`, its reader thread) and the resuming of a stream
(``StreamSpec(..., skip_records=N, resume_at=T)``) are in ``loco_stream.stream.lane``.

The push interface under ``run`` (`MultiDetector` uses it): ``add_stream(name, ...)``,
``push(name, item)`` (assembles steps; work is deferred), ``process()`` (runs what is due for
all streams, batched; returns their events), ``finish(name)`` (closes one stream).
Not thread-safe: one caller at a time.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model_dir import ModelDir
from ..sources import MediaSource, SourceError
from ..sources.base import Item
from .batched import BatchedModel
from .engine import Clock, StreamEngine, StreamStats, WindowInputs
from .lane import (
    PARTS,
    POLL_SECONDS,
    Lane,
    Reader,
    SourceEnded,
    StreamEvent,
    StreamReport,
    StreamSpec,
    check_stream_name,
)
from .stitch import DEFAULT_THRESHOLD, Event, StitchConfig


@dataclass
class _Running:
    """A stream of ``run``: its spec, source, reader and lane."""

    spec: StreamSpec
    source: MediaSource
    reader: Reader
    lane: Lane


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
        self._lanes: dict[str, Lane] = {}

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
        lane = Lane(name, self.model, stitch, self.hop, clock, skip_records)
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
        due: list[tuple[Lane, WindowInputs]] = []
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
            outputs = scores[row], segments[row], lane.model.info.point_positions
            found = lane.take_window(window, *outputs, per_window)
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

    def _lane(self, name: str) -> Lane:
        try:
            return self._lanes[name]
        except KeyError:
            raise ValueError(f"no open stream named '{name}'") from None

    @staticmethod
    def _events(lane: Lane, events: list[Event]) -> list[StreamEvent]:
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
                reader = Reader(spec.name, source, pace, spec.resume_at, inbox)
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
                    if isinstance(message, SourceEnded):
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
