"""What every media source hands out, and the one clock they share.

Stream time is seconds since the first sample of the stream: a `StreamClock` maps
``time.monotonic()`` readings of live sources onto it, and every `VideoFrame` and `AudioBlock`
carries a time taken from its source (capture time, ADC time or container pts), never a counter
that assumes a perfect rate. Audio always leaves a source as mono float32 at
`TARGET_SAMPLE_RATE` (`MonoResampler`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import numpy as np
import soxr

TARGET_SAMPLE_RATE = 16000


@dataclass
class VideoFrame:
    """One picture: ``image`` is (H, W, 3) uint8 RGB, ``t`` its stream time in seconds."""

    t: float
    image: np.ndarray


@dataclass
class AudioBlock:
    """Consecutive mono samples in [-1, 1]; ``t`` is the stream time of the first one."""

    t: float
    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


Item = VideoFrame | AudioBlock


class SourceError(RuntimeError):
    """A source that cannot open or stopped delivering; the message says which and what to try."""


@dataclass
class SourceStats:
    """Counters of a source, updated while it runs."""

    frames: int = 0  # video frames handed out
    audio_seconds: float = 0.0  # audio handed out
    dropped_frames: int = 0  # frames discarded because the consumer was slower than the camera
    overflows: int = 0  # audio lost: device overflows, or blocks the consumer did not take in time


class StreamClock:
    """Maps ``time.monotonic()`` readings to stream time; t=0 is the first reading stamped.

    Sources merged into one stream share one clock, so the first sample of either source defines
    t=0. A sample captured just before that origin but stamped later gets a slightly negative time:
    sources clip such samples to t=0 (video) or drop the part before it (audio).
    """

    def __init__(self) -> None:
        self._origin: float | None = None
        self._lock = threading.Lock()

    @property
    def origin(self) -> float | None:
        """The monotonic time of t=0, or None before the first sample."""
        return self._origin

    def stamp(self, monotonic_time: float) -> float:
        """Stream time of a ``time.monotonic()`` reading (the first call fixes the origin)."""
        with self._lock:
            if self._origin is None:
                self._origin = monotonic_time
            return monotonic_time - self._origin

    def now(self) -> float:
        """Stream time of this instant."""
        return self.stamp(time.monotonic())


class MediaSource(ABC):
    """A camera, microphone, file or merge of them: iterate once for its items, then close.

    ``__iter__`` yields `VideoFrame` and `AudioBlock` items, each kind in non-decreasing time
    order. Live sources stamp their items with ``clock`` (replace it before iterating to share
    one clock between sources, as `MergedSource` does).
    """

    description: str
    has_video: bool
    has_audio: bool
    is_live: bool = False  # paced by the wall clock: its ``clock`` also times event emission

    def __init__(self) -> None:
        self.clock = StreamClock()
        self.stats = SourceStats()

    @abstractmethod
    def __iter__(self) -> Iterator[Item]: ...

    @abstractmethod
    def close(self) -> None:
        """Release the device or file; safe to call more than once and from another thread."""

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class MonoResampler:
    """Mixes blocks to mono (mean of channels) and resamples them to `TARGET_SAMPLE_RATE` with soxr.

    Each pushed block carries the stream time of its first sample (or None: it follows the
    previous block without a gap); every output block gets the time of the input sample it starts
    at, so gaps and jitter of the source's clock carry through. soxr's streaming output is
    delay-compensated: output sample k lies at input time k / TARGET_SAMPLE_RATE.
    """

    def __init__(self, input_rate: int) -> None:
        self.input_rate = input_rate
        self._soxr = soxr.ResampleStream(input_rate, TARGET_SAMPLE_RATE, 1, dtype="float32")
        self._anchors: deque[tuple[int, float]] = deque()  # (input sample index, its stream time)
        self._consumed = 0  # input samples pushed
        self._produced = 0  # output samples returned
        self._last_t = 0.0

    def push(self, samples: np.ndarray, t: float | None, last: bool = False) -> AudioBlock | None:
        """Feed (N,) or (N, channels) samples from stream time ``t``; None while soxr has none."""
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if t is not None and t < 0:  # captured before the shared clock's origin: drop that part
            skip = min(len(mono), int(np.ceil(-t * self.input_rate)))
            mono, t = mono[skip:], t + skip / self.input_rate
        if len(mono):
            if t is not None or not self._anchors:
                self._anchors.append((self._consumed, 0.0 if t is None else t))
            self._consumed += len(mono)
        out = self._soxr.resample_chunk(mono, last=last)
        if not len(out):
            return None
        start = self._produced * self.input_rate / TARGET_SAMPLE_RATE  # in input samples
        block_t = max(self._last_t, self._time_of(start))
        self._produced += len(out)
        self._last_t = block_t
        return AudioBlock(block_t, out, TARGET_SAMPLE_RATE)

    def flush(self) -> AudioBlock | None:
        """The samples soxr still holds, at the end of the stream."""
        return self.push(np.zeros(0, np.float32), None, last=True)

    def _time_of(self, index: float) -> float:
        while len(self._anchors) > 1 and self._anchors[1][0] <= index:
            self._anchors.popleft()
        start, t = self._anchors[0]
        return t + (index - start) / self.input_rate


class Interleaver:
    """Merges streams that are each time-ordered into one time order (a k-way merge).

    An item is released once every still-open stream has a later item pending, or its stream's
    buffer holds ``max_pending`` items (None: no bound), or it has waited ``max_hold`` seconds
    (live sources: bounded latency rather than strict order). Streams are named by hashable keys.
    """

    def __init__(
        self, keys: list[Hashable], max_pending: int | None, max_hold: float | None = None
    ) -> None:
        self._pending: dict[Hashable, deque[tuple[float, Item]]] = {k: deque() for k in keys}
        self._open = set(keys)
        self._max_pending = max_pending
        self._max_hold = max_hold

    def push(self, key: Hashable, item: Item) -> None:
        self._pending[key].append((time.monotonic(), item))

    def finish(self, key: Hashable) -> None:
        """No more items will come from this stream."""
        self._open.discard(key)

    def pending(self, key: Hashable) -> int:
        return len(self._pending[key])

    @property
    def done(self) -> bool:
        return not self._open and not any(self._pending.values())

    def ready(self) -> Iterator[Item]:
        """Release every item that may go out now, in time order."""
        while True:
            heads = [(q[0][1].t, i, k) for i, (k, q) in enumerate(self._pending.items()) if q]
            if not heads:
                return
            _, _, key = min(heads)
            queue = self._pending[key]
            starving = any(not self._pending[k] for k in self._open)
            waited = time.monotonic() - queue[0][0]
            held_too_long = self._max_hold is not None and waited >= self._max_hold
            full = self._max_pending is not None and len(queue) >= self._max_pending
            if starving and not full and not held_too_long:
                return
            yield queue.popleft()[1]
