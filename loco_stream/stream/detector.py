"""The embedding API: push frames and audio with their times, get audio-visual events back."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..model_dir import ModelDir
from ..sources.base import TARGET_SAMPLE_RATE, AudioBlock, MonoResampler, VideoFrame
from .engine import StreamEngine, StreamStats
from .stitch import DEFAULT_THRESHOLD, Event, StitchConfig


class Detector:
    """A real-time audio-visual event detector fed by the application.

        detector = Detector()                       # the packaged default model
        detector.push_frame(rgb_image, t)           # (H, W, 3) uint8 RGB, t in seconds
        detector.push_audio(samples, t, 44100)      # (N,) or (N, channels), any rate
        for event in detector.events():             # what is ready, without waiting
            print(event.type, event.label, event.start, event.end)
        remaining = detector.close()                # closes open events

    Times are seconds on one clock shared by frames and audio (the first sample at or near 0).
    Each event is a `start` (confirmed, still going) or an `end` (final) record; ``on_event``, if
    given, is called with each event as it is emitted, in emission order, in the thread that
    pushed the data that produced it (holding the lock), and the event is then not queued for
    ``events()``.

    Thread-safety: every method holds one internal (re-entrant) lock, so frames and audio may be
    pushed from different threads (a camera thread and an audio callback, say) while another
    thread reads ``events()``. Work is done in the pushing thread: a push that completes a hop
    runs the window graph (milliseconds to tens of milliseconds), so push from threads that can
    wait that long.
    """

    def __init__(
        self,
        model: str | Path | ModelDir | None = None,
        backend: str = "onnxruntime",
        threads: int = 2,
        threshold: float = DEFAULT_THRESHOLD,
        hop: int | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._owns_model = not isinstance(model, ModelDir)
        self.model = ModelDir(model, backend, threads) if self._owns_model else model
        self._engine = StreamEngine(self.model, StitchConfig(threshold=threshold), hop)
        self._on_event = on_event
        self._ready: deque[Event] = deque()
        self._resampler: MonoResampler | None = None
        self._lock = threading.RLock()
        self._closed = False

    @property
    def classes(self) -> list[str]:
        return self.model.info.classes

    @property
    def stats(self) -> StreamStats:
        return self._engine.stats

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Add a video frame: ``image`` (H, W, 3) uint8 RGB shown at stream time ``t`` seconds."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"a frame must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}"
            )
        self._deliver(VideoFrame(float(t), image))

    def push_audio(
        self, samples: np.ndarray, t: float, sample_rate: int = TARGET_SAMPLE_RATE
    ) -> None:
        """Add consecutive samples (N,) or (N, channels) in [-1, 1], the first at ``t`` seconds;
        any rate and channel count (mixed to mono, resampled to 16 kHz)."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim not in (1, 2):
            raise ValueError(f"audio must be (N,) or (N, channels), got shape {samples.shape}")
        with self._lock:
            self._check_open()
            if sample_rate == TARGET_SAMPLE_RATE:
                mono = samples.mean(axis=1) if samples.ndim == 2 else samples
                blocks = [*self._flush_resampler(), AudioBlock(float(t), mono, sample_rate)]
            else:
                if self._resampler is None or self._resampler.input_rate != sample_rate:
                    blocks = self._flush_resampler()
                    self._resampler = MonoResampler(sample_rate)
                else:
                    blocks = []
                blocks.append(self._resampler.push(samples, float(t)))
            self._emit([e for b in blocks if b is not None for e in self._engine.push(b)])

    def events(self) -> Iterator[Event]:
        """The events emitted since the last call, oldest first; never waits."""
        while True:
            with self._lock:
                if not self._ready:
                    return
                event = self._ready.popleft()
            yield event

    def close(self) -> list[Event]:
        """End of stream: closes open events; returns every event not yet taken from
        ``events()`` (or, with ``on_event``, the events emitted by closing). Pushing afterwards
        is an error; closing again returns nothing."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            events = [e for b in self._flush_resampler() for e in self._engine.push(b)]
            events += self._engine.finish()
            self._emit(events)
            remaining = list(self._ready) if self._on_event is None else events
            self._ready.clear()
            if self._owns_model:
                self.model.close()
            return remaining

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _deliver(self, item: VideoFrame) -> None:
        with self._lock:
            self._check_open()
            self._emit(self._engine.push(item))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the detector is closed: make a new one for a new stream")

    def _flush_resampler(self) -> list[AudioBlock]:
        if self._resampler is None:
            return []
        block, self._resampler = self._resampler.flush(), None
        return [block] if block is not None else []

    def _emit(self, events: list[Event]) -> None:
        """Hand events to ``on_event``, or queue them for ``events()`` (the lock is held)."""
        if self._on_event is None:
            self._ready.extend(events)
        else:
            for event in events:
                self._on_event(event)
