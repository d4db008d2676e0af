"""Video from one source and audio from another, on one clock, as one stream.

Each source runs in its own thread; both get the same `StreamClock`, so the first sample of
either is t=0. Items come through one bounded queue and are put back in time order by a k-way
merge that holds an item at most ``max_hold`` seconds waiting for the other side (bounded
latency over strict order). A `SourceError` on either side closes both and is raised here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from loco_stream.sources.base import (
    AudioBlock,
    Interleaver,
    Item,
    MediaSource,
    SourceError,
    SourceStats,
    StreamClock,
    VideoFrame,
)

QUEUE_ITEMS = 64
MAX_HOLD_S = 0.25
POLL_S = 0.05  # how often held items are reconsidered while the queue is quiet
JOIN_TIMEOUT_S = 2.0


class _Done:
    """A side's last message: its source ended, or failed with ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class MergedSource(MediaSource):
    """The video frames of ``video`` and the audio blocks of ``audio`` (either may be None)."""

    def __init__(
        self,
        video: MediaSource | None,
        audio: MediaSource | None,
        max_hold: float = MAX_HOLD_S,
    ) -> None:
        # No MediaSource.__init__: the clock is made here and the stats are the sources' own.
        self._sides: dict[type, MediaSource] = {}
        if video is not None:
            self._sides[VideoFrame] = video
        if audio is not None:
            self._sides[AudioBlock] = audio
        if not self._sides:
            raise ValueError("MergedSource needs a video source, an audio source, or both")
        self.clock = StreamClock()
        for source in self._sides.values():
            source.clock = self.clock
        self.max_hold = max_hold
        self.has_video = video is not None and video.has_video
        self.has_audio = audio is not None and audio.has_audio
        self.description = " + ".join(s.description for s in self._sides.values())
        self._queue: queue.Queue = queue.Queue(QUEUE_ITEMS)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def stats(self) -> SourceStats:
        video = self._sides.get(VideoFrame)
        audio = self._sides.get(AudioBlock)
        return SourceStats(
            frames=video.stats.frames if video else 0,
            audio_seconds=audio.stats.audio_seconds if audio else 0.0,
            dropped_frames=video.stats.dropped_frames if video else 0,
            overflows=audio.stats.overflows if audio else 0,
        )

    def __iter__(self) -> Iterator[Item]:
        ordered = Interleaver(list(self._sides), QUEUE_ITEMS, self.max_hold)
        for kind, source in self._sides.items():
            thread = threading.Thread(
                target=self._pump, args=(kind, source), name=f"merge-{kind.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        try:
            while not ordered.done:
                try:
                    kind, item = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    pass
                else:
                    if isinstance(item, _Done):
                        if item.error is not None:
                            raise item.error
                        ordered.finish(kind)
                    else:
                        ordered.push(kind, item)
                yield from ordered.ready()
        finally:
            self.close()

    def _pump(self, kind: type, source: MediaSource) -> None:
        """Thread body: move one source's items of ``kind`` into the shared queue."""
        done = _Done()
        try:
            for item in source:
                if self._stop.is_set():
                    break
                if isinstance(item, kind):
                    self._put((kind, item))
        except SourceError as err:
            done = _Done(err)
        except Exception as err:  # any failure must reach the consumer, not die in this thread
            error = SourceError(f"{source.description} failed: {err!r}")
            error.__cause__ = err
            done = _Done(error)
        self._put((kind, done))

    def _put(self, message: tuple[type, object]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self._stop.set()
        for source in self._sides.values():
            source.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT_S)
