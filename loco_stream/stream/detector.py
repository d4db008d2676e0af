"""The embedding API: push frames and audio with their times, get audio-visual events back.

Everything pushed is checked at the door, and either handled in a documented way or refused
with one `ValueError` naming the problem (see `Detector`); nothing non-finite reaches a graph.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..model_dir import ModelDir
from ..sinks.base import Sink
from ..sinks.monitor import Monitor
from ..sources.base import TARGET_SAMPLE_RATE, AudioBlock, Item, MonoResampler, VideoFrame
from .callbacks import GuardedCallback
from .engine import StreamEngine, StreamStats
from .stitch import DEFAULT_THRESHOLD, Event, StitchConfig

MAX_CHANNELS = 32  # more columns than this in a (N, C) block: not channels-last audio
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000  # Hz, the rates push_audio accepts
MAX_ABS_TIME = 1e10  # s; larger "seconds" are another unit (a clock in ns or us?)
FLOAT_PEAK_LIMIT = 2.0  # float samples beyond this are not [-1, 1] audio (unscaled PCM?)
RATE_CHECK_SECONDS = 5.0  # audio (of contiguous blocks) over which the declared rate is checked
RATE_TOLERANCE = 0.07  # samples per second of timestamps may differ this much from the rate
RATE_CHECK_GAP_SECONDS = 0.25  # a pause between blocks longer than this is a gap, not jitter
COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


class Detector:
    """A real-time audio-visual event detector fed by the application.

        detector = Detector()                       # the packaged default model
        detector.push_frame(rgb_image, t)           # (H, W, 3) uint8 RGB, t in seconds
        detector.push_audio(samples, t, 44100)      # (N,) or (N, channels), any rate
        for event in detector.events():             # what is ready, without waiting
            print(event.type, event.label, event.start, event.end)
        remaining = detector.close()                # closes open events

    Times are seconds on one clock shared by frames and audio, starting anywhere: the stream
    starts at the first item pushed (``origin``, in the caller's clock) and event times are
    seconds since then. Each event is a `start` (confirmed, still going) or an `end` (final)
    record; ``on_event``, if given, is called with each event as it is emitted, in emission
    order, in the thread that pushed the data that produced it (holding the lock), and the event
    is then not queued for ``events()``; an ``on_event`` that raises is logged with its event and
    counted (``callback_errors``), and the other events go on.

    What is checked (a `ValueError` names the problem, and the item is not used):
    ``threshold`` in [0, 1]; ``hop`` 1 to the window; frames (H, W, 3) uint8 with H, W > 0;
    audio (N,) or (N, channels) channels-last (a (2, N) block is refused as channels-first),
    finite, float in [-1, 1] or integer PCM (scaled by its dtype's range: int16 / 32768,
    uint8 centred at 128), at a declared rate of 1 to 384 kHz that agrees with its timestamps
    (checked over 5 s of audio; ``16000.0`` is 16 kHz); times finite seconds. Handled: items
    whose time goes back are dropped and counted (``stats.clock_regressions``, warned once); a
    gap in one modality is filled up to 10 s, a longer one closes the stream so far and restarts
    it at the new time; one modality 30 s ahead of the other (which stopped) raises
    `StreamStalled` once (after its events are out), its buffer is dropped and the detector
    goes on.

    ``sinks`` (`loco_stream.sinks`: `EvidenceRecorder`, `MqttSink`, `WebhookSink`, `LivePage`)
    get every record and, for the evidence, every item pushed; they are opened here (a
    `SinkError` if one cannot start) and closed by ``close()``. A sink that fails later never
    stops the detector. Their stream name is "detector".

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
        sinks: Sequence[Sink] = (),
    ) -> None:
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold is a score, between 0 and 1; got {threshold!r}")
        self._owns_model = not isinstance(model, ModelDir)
        self.model = ModelDir(model, backend, threads) if self._owns_model else model
        try:
            self._engine = StreamEngine(self.model, StitchConfig(threshold=threshold), hop)
            monitor = Monitor(sinks, stream="detector") if sinks else None
            if monitor is not None:
                monitor.open()
        except Exception:  # a bad hop, or a sink that cannot start
            self._close_model()
            raise
        guarded = GuardedCallback(on_event) if on_event is not None else None
        self._init_stream(guarded, threading.RLock(), monitor)

    def _init_stream(
        self,
        on_event: Callable[[Event], None] | None,
        lock: threading.RLock,
        monitor: Monitor | None,
        name: str | None = None,
    ) -> None:
        """The state of the stream pushed in: what checks, resamples and queues its input, and
        the sinks' monitor (``name``: the stream's, where the monitor has many)."""
        self._on_event = on_event
        self._monitor = monitor
        self._name = name
        self._ready: deque[Event] = deque()
        self._resampler: MonoResampler | None = None
        self._rate_check = _RateCheck(TARGET_SAMPLE_RATE)
        self._lock = lock
        self._closed = False
        self.origin: float | None = None  # the caller's time of the stream's start

    @property
    def classes(self) -> list[str]:
        return self.model.info.classes

    @property
    def callback_errors(self) -> int:
        """Calls of ``on_event`` that raised (each logged with its event)."""
        return getattr(self._on_event, "errors", 0)

    @property
    def stats(self) -> StreamStats:
        return self._engine.stats

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Add a video frame: ``image`` (H, W, 3) uint8 RGB shown at time ``t`` seconds."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"a frame must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"a frame must have pixels, got an empty {image.shape} image")
        t = _check_time(t)
        with self._lock:
            self._check_open()
            self._emit(self._push(VideoFrame(max(self._stream_time(t), 0.0), image)))

    def push_audio(
        self, samples: np.ndarray, t: float, sample_rate: int = TARGET_SAMPLE_RATE
    ) -> None:
        """Add consecutive samples (N,) or (N, channels), the first at ``t`` seconds: float in
        [-1, 1] or integer PCM, at ``sample_rate`` Hz (mixed to mono, resampled to 16 kHz)."""
        samples = _check_samples(samples)
        if _is_number(sample_rate) and float(sample_rate).is_integer():
            sample_rate = int(sample_rate)  # 16000.0 is 16000 Hz
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
            raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )
        sample_rate = int(sample_rate)
        t = _check_time(t)
        with self._lock:
            self._check_open()
            if self._rate_check.rate != sample_rate:
                self._rate_check = _RateCheck(sample_rate)
            self._rate_check.add(t, len(samples))
            t = self._stream_time(t)
            if sample_rate == TARGET_SAMPLE_RATE:
                mono = samples.mean(axis=1) if samples.ndim == 2 else samples
                skip = min(len(mono), math.ceil(-t * sample_rate)) if t < 0 else 0
                block = AudioBlock(t + skip / sample_rate, mono[skip:], sample_rate)
                blocks = [*self._flush_resampler(), block]
            else:
                if self._resampler is None or self._resampler.input_rate != sample_rate:
                    blocks = self._flush_resampler()
                    self._resampler = MonoResampler(sample_rate)
                else:
                    blocks = []
                blocks.append(self._resampler.push(samples, t))
            blocks = [b for b in blocks if b is not None and len(b.samples)]
            self._emit([e for b in blocks for e in self._push(b)])

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
            events = [e for b in self._flush_resampler() for e in self._push(b)]
            events += self._engine.finish()
            self._emit(events, report_stall=False)
            remaining = list(self._ready) if self._on_event is None else events
            self._ready.clear()
            if self._monitor is not None:
                self._close_monitor()
            self._close_model()
            return remaining

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stream_time(self, t: float) -> float:
        """The caller's time ``t`` as stream time (the first item pushed is 0)."""
        if self.origin is None:
            self.origin = t
        return t - self.origin

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the detector is closed: make a new one for a new stream")

    def _close_model(self) -> None:
        if self._owns_model:
            self.model.close()

    def _push(self, item: Item) -> list[Event]:
        """Hand one item to the sinks (evidence) and to the engine; the events it made."""
        if self._monitor is not None:
            self._monitor.on_item(item, self._name)
        return self._engine.push(item)

    def _publish(self, event: Event) -> None:
        """Hand an event's record to the sinks."""
        self._monitor.on_record(event.to_record())

    def _close_monitor(self) -> None:
        """The stream ended: its evidence is finished, the sinks closed."""
        self._monitor.finish()
        self._monitor.close()

    def _flush_resampler(self) -> list[AudioBlock]:
        if self._resampler is None:
            return []
        block, self._resampler = self._resampler.flush(), None
        return [block] if block is not None and len(block.samples) else []

    def _emit(self, events: list[Event], report_stall: bool = True) -> None:
        """Hand events to ``on_event``, or queue them for ``events()`` (the lock is held); then
        report a stall that began, if any."""
        if self._monitor is not None:
            for event in events:
                self._publish(event)
            self._monitor.pump()
        if self._on_event is None:
            self._ready.extend(events)
        else:
            for event in events:
                self._on_event(event)
        stall = self._engine.take_stall()
        if stall is not None and report_stall:
            raise stall


class _RateCheck:
    """Refuses audio whose declared rate disagrees with its timestamps: over ``RATE_CHECK_SECONDS``
    of contiguous blocks (pauses longer than ``RATE_CHECK_GAP_SECONDS`` are skipped), the samples
    received per second of timestamps must be the declared rate within ``RATE_TOLERANCE``. Once
    they are not, every block at that rate is refused: the samples are at another rate. A block
    earlier than the one before (blocks out of order) restarts the measure: it says nothing of
    the rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._previous: tuple[float, int] | None = None  # (t, samples) of the last block
        self._samples = 0  # samples of the blocks measured so far
        self._seconds = 0.0  # time their timestamps advanced
        self._refusal: str | None = None  # why blocks at this rate are refused

    def add(self, t: float, samples: int) -> None:
        if self._refusal is not None:
            raise ValueError(self._refusal)
        previous, self._previous = self._previous, (t, samples)
        if previous is None or samples == 0:
            return
        elapsed = t - previous[0]
        if elapsed <= 0:  # out of order (the stream drops and counts it): the measure restarts
            self._samples, self._seconds = 0, 0.0
            return
        if elapsed - previous[1] / self.rate > RATE_CHECK_GAP_SECONDS:
            return  # a pause: not a measure of the rate
        self._samples += previous[1]
        self._seconds += elapsed
        if self._seconds < RATE_CHECK_SECONDS:
            return
        measured = self._samples / self._seconds
        self._samples, self._seconds = 0, 0.0
        if abs(measured / self.rate - 1) > RATE_TOLERANCE:
            likely = min(COMMON_RATES, key=lambda r: abs(r - measured))
            self._refusal = (
                f"audio declared at {self.rate} Hz comes at {measured:.0f} samples per second of "
                f"its timestamps (like {likely} Hz?): pass the rate the samples are at "
                "(push_audio(samples, t, sample_rate=...))"
            )
            raise ValueError(self._refusal)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_time(t: float) -> float:
    """``t`` as a float of finite seconds, or a ValueError."""
    if not _is_number(t) or not math.isfinite(t):
        raise ValueError(f"a time must be finite seconds, got {t!r}")
    if abs(t) >= MAX_ABS_TIME:
        raise ValueError(f"time {t!r} is not in seconds (over 300 years); pass seconds")
    return float(t)


def _check_samples(samples: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) float32 samples in [-1, 1] from a float or integer PCM array, or a
    ValueError naming what is wrong."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio must be (N,) or (N, channels), got shape {samples.shape}")
    if samples.ndim == 2:
        rows, columns = samples.shape
        if columns > MAX_CHANNELS and rows <= MAX_CHANNELS:
            raise ValueError(
                f"audio of shape {samples.shape} looks like (channels, N): pass (N, channels), "
                "e.g. samples.T"
            )
        if columns == 0 or columns > MAX_CHANNELS:
            raise ValueError(
                f"audio of shape {samples.shape} has {columns} channels; give (N, channels) "
                f"with 1 to {MAX_CHANNELS} channels"
            )
    if np.issubdtype(samples.dtype, np.integer) and samples.dtype != np.bool_:
        info = np.iinfo(samples.dtype)
        middle = (int(info.max) + int(info.min) + 1) / 2  # 0 for signed, 128 for uint8
        scale = (int(info.max) - int(info.min) + 1) / 2  # 32768 for int16
        return ((samples.astype(np.float64) - middle) / scale).astype(np.float32)
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(
            f"audio must be float samples in [-1, 1] or integer PCM, got dtype {samples.dtype}"
        )
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise ValueError(f"audio holds {bad} NaN or Inf samples; push finite samples in [-1, 1]")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > FLOAT_PEAK_LIMIT:
        raise ValueError(
            f"float audio must lie in [-1, 1], but its peak is {peak:g}: is it unscaled integer "
            "PCM? pass the integer array itself (scaled by its dtype), or divide it (by 32768 for "
            "16-bit)"
        )
    return samples
