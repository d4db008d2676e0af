"""The embedding API for many streams: `Detector`'s checks per stream, one batched engine for all.

detector = MultiDetector()                          # the packaged default model
detector.add_stream("door", threshold=0.4)
detector.push_frame("door", rgb_image, t)           # (H, W, 3) uint8 RGB, t in seconds
detector.push_audio("door", samples, t, 44100)      # (N,) or (N, channels), any rate
for item in detector.events():                      # StreamEvent: .stream, .event
    print(item.stream, item.event.type, item.event.label)
detector.close_stream("door")                       # closes its open events
detector.close()                                    # every stream, then the model

``MultiDetector(sinks=[...])`` hands every stream's records and media to the sinks
(`loco_stream.sinks`), as `Detector` does: one broker connection, one page, evidence per stream.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..model_dir import ModelDir
from ..sinks.base import Sink
from ..sinks.monitor import Monitor
from ..sources.base import TARGET_SAMPLE_RATE
from .callbacks import GuardedCallback
from .detector import Detector
from .engine import StreamStats
from .lane import StreamEvent
from .multi import MultiStreamEngine
from .stitch import DEFAULT_THRESHOLD, Event


class _StreamInput(Detector):
    """One stream's door: `Detector`'s checks, resampling and clock origin, pushing into a lane
    of the shared engine (whose model and work belong to `MultiDetector`)."""

    def __init__(
        self,
        engine: MultiStreamEngine,
        name: str,
        threshold: float,
        on_event: Callable[[Event], None],
        lock: threading.RLock,
        monitor: Monitor | None,
    ) -> None:  # no Detector.__init__: no model or engine of its own
        self._owns_model = False
        self.model = engine.model
        self._engine = engine.add_stream(name, threshold)
        self._init_stream(on_event, lock, monitor, name)

    def _publish(self, event: Event) -> None:
        """Nothing: `MultiDetector` publishes every stream's records (with their names)."""

    def _close_monitor(self) -> None:
        self._monitor.finish(self._name)  # the monitor is MultiDetector's, closed by it


class MultiDetector:
    """A real-time audio-visual event detector for many streams fed by the application.

    Every stream is its own `Detector` as far as its input goes: the same checks (a `ValueError`
    naming the problem), resampling, dropped regressions, gap and stall handling
    (`StreamStalled` on the push that reveals it), and its own time origin (its first item).
    Events come out as `StreamEvent` (the stream's name and the `Event`): from ``events()``, or
    handed to ``on_event`` in the thread whose push or ``process()`` produced them.

    Work: with ``autoprocess`` (the default) each push runs what is due at once, for every
    stream, batched. With ``autoprocess=False`` pushes only assemble steps, and ``process()``
    runs the due steps and windows of all streams in one call each: push a round of every
    stream's frames and audio, then call ``process()`` (what fills a GPU's batches).
    An ``on_event`` that raises is logged with the event and counted (``callback_errors``): the
    other events and streams go on.
    Thread-safety: one internal re-entrant lock guards everything; work runs in the caller.
    ``sinks``: as `Detector`'s, for every stream (records carry the stream's name).
    """

    def __init__(
        self,
        model: str | Path | ModelDir | None = None,
        backend: str = "onnxruntime",
        threads: int = 2,
        hop: int | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
        autoprocess: bool = True,
        sinks: Sequence[Sink] = (),
    ) -> None:
        self._engine = MultiStreamEngine(model, backend, threads, hop)
        self._monitor = Monitor(sinks) if sinks else None
        if self._monitor is not None:
            try:
                self._monitor.open()
            except Exception:
                self._engine.close()
                raise
        self._on_event = GuardedCallback(on_event) if on_event is not None else None
        self._autoprocess = autoprocess
        self._ready: deque[StreamEvent] = deque()
        self._streams: dict[str, _StreamInput] = {}
        self._lock = threading.RLock()
        self._closed = False

    @property
    def classes(self) -> list[str]:
        return list(self._engine.model.info.classes)

    @property
    def streams(self) -> list[str]:
        return list(self._streams)

    @property
    def callback_errors(self) -> int:
        """Calls of ``on_event`` that raised (each logged with its event; no stream stops)."""
        return self._on_event.errors if self._on_event is not None else 0

    def stats(self, name: str) -> StreamStats:
        return self._stream(name).stats

    def add_stream(self, name: str, threshold: float = DEFAULT_THRESHOLD) -> None:
        """Open stream ``name`` (1-64 letters, digits, '.', '_', '-') with its own threshold."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
            raise ValueError(f"threshold is a score, between 0 and 1; got {threshold!r}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold is a score, between 0 and 1; got {threshold!r}")
        with self._lock:
            self._check_open()

            def deliver(event: Event) -> None:
                self._deliver(StreamEvent(name, event))

            self._streams[name] = _StreamInput(
                self._engine, name, threshold, deliver, self._lock, self._monitor
            )

    def push_frame(self, name: str, image: np.ndarray, t: float) -> None:
        """Add a video frame of stream ``name``, as `Detector.push_frame`."""
        with self._lock:
            self._stream(name).push_frame(image, t)
            self._after_push()

    def push_audio(
        self, name: str, samples: np.ndarray, t: float, sample_rate: int = TARGET_SAMPLE_RATE
    ) -> None:
        """Add audio of stream ``name``, as `Detector.push_audio`."""
        with self._lock:
            self._stream(name).push_audio(samples, t, sample_rate)
            self._after_push()

    def process(self) -> None:
        """Run every stream's due steps and windows, batched; their events are delivered."""
        with self._lock:
            for item in self._engine.process():
                self._deliver(item)

    def events(self) -> Iterator[StreamEvent]:
        """The events emitted since the last call, oldest first; never waits."""
        while True:
            with self._lock:
                if not self._ready:
                    return
                item = self._ready.popleft()
            yield item

    def close_stream(self, name: str) -> list[StreamEvent]:
        """End stream ``name``: its open events are closed. Returns the events it emitted by
        closing (also delivered to ``on_event`` or ``events()``)."""
        with self._lock:
            stream = self._stream(name)
            closing = [StreamEvent(name, event) for event in stream.close()]
            self._engine.finish(name)
            del self._streams[name]
            return closing

    def close(self) -> list[StreamEvent]:
        """Close every stream, then the model; returns every event not yet taken from
        ``events()`` (or, with ``on_event``, the events emitted by closing)."""
        with self._lock:
            if self._closed:
                return []
            self.process()
            closing = [item for name in list(self._streams) for item in self.close_stream(name)]
            self._closed = True
            if self._monitor is not None:
                self._monitor.close()
            self._engine.close()
            remaining = list(self._ready) if self._on_event is None else closing
            self._ready.clear()
            return remaining

    def __enter__(self) -> MultiDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_push(self) -> None:
        if self._autoprocess:
            self.process()

    def _deliver(self, item: StreamEvent) -> None:
        if self._monitor is not None:
            self._monitor.on_record(item.to_record())
        if self._on_event is None:
            self._ready.append(item)
        else:
            self._on_event(item)

    def _stream(self, name: str) -> _StreamInput:
        self._check_open()
        try:
            return self._streams[name]
        except KeyError:
            raise ValueError(f"no open stream named '{name}': add_stream('{name}') first") from None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the detector is closed: make a new one")
