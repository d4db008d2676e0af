"""Video from one source and audio from another, on one clock, as one stream.

Each source runs in its own thread and fills a bounded queue; both get the same `StreamClock`,
so the first sample of either is t=0. The consumer merges the two in time order: an item waits
until the other side has a later one, or at most ``max_hold`` seconds (live sources: bounded
latency rather than strict order; ``max_hold=None`` gives strict order, for files). A side that
runs ahead is not read further (its thread blocks), so memory stays bounded. A `SourceError` on
either side closes both and is raised here.
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

QUEUE_ITEMS = 64  # per side, in its queue and again waiting in the merge
MAX_HOLD_S = 0.25
POLL_S = 0.05  # how often held items are reconsidered while nothing arrives
JOIN_TIMEOUT_S = 2.0


class _Done:
    """A side's last message: its source ended, or failed with ``error``."""

    def __init__(self, error: SourceError | None = None) -> None:
        self.error = error


class MergedSource(MediaSource):
    """The video frames of ``video`` and the audio blocks of ``audio`` (either may be None)."""

    def __init__(
        self,
        video: MediaSource | None,
        audio: MediaSource | None,
        max_hold: float | None = MAX_HOLD_S,
        clock: StreamClock | None = None,
    ) -> None:
        # No MediaSource.__init__: the clock is ``clock`` (a stream to continue) or a new one,
        # the stats are the sources' own.
        sides = {VideoFrame: video, AudioBlock: audio}
        self._sides: dict[type, MediaSource] = {k: s for k, s in sides.items() if s is not None}
        if not self._sides:
            raise ValueError("MergedSource needs a video source, an audio source, or both")
        self.clock = clock or StreamClock()
        for source in self._sides.values():
            source.clock = self.clock
        self.is_live = any(source.is_live for source in self._sides.values())
        self.max_hold = max_hold
        self.has_video = video is not None and video.has_video
        self.has_audio = audio is not None and audio.has_audio
        self.description = " + ".join(s.description for s in self._sides.values())
        self._queues = {kind: queue.Queue(QUEUE_ITEMS) for kind in self._sides}
        self._arrived = threading.Event()
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
        ordered = Interleaver(list(self._sides), None, self.max_hold)
        for kind, source in self._sides.items():
            thread = threading.Thread(
                target=self._pump, args=(kind, source), name=f"merge-{kind.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        try:
            while not ordered.done:
                self._arrived.clear()
                received = False
                for kind, waiting in self._queues.items():
                    while ordered.pending(kind) < QUEUE_ITEMS:
                        try:
                            item = waiting.get_nowait()
                        except queue.Empty:
                            break
                        received = True
                        if not isinstance(item, _Done):
                            ordered.push(kind, item)
                        elif item.error is not None:
                            raise item.error
                        else:
                            ordered.finish(kind)
                yield from ordered.ready()
                if not received:
                    self._arrived.wait(POLL_S)
        finally:
            self.close()

    def _pump(self, kind: type, source: MediaSource) -> None:
        """Thread body: move one source's items of ``kind`` into its queue."""
        done = _Done()
        try:
            for item in source:
                if self._stop.is_set():
                    break
                if isinstance(item, kind):
                    self._put(kind, item)
        except SourceError as err:
            done = _Done(err)
        except Exception as err:  # any failure must reach the consumer, not die in this thread
            error = SourceError(f"{source.description} failed: {err!r}")
            error.__cause__ = err
            done = _Done(error)
        self._put(kind, done)

    def _put(self, kind: type, message: Item | _Done) -> None:
        while not self._stop.is_set():
            try:
                self._queues[kind].put(message, timeout=POLL_S)
            except queue.Full:
                continue
            self._arrived.set()
            return

    def close(self) -> None:
        self._stop.set()
        for source in self._sides.values():
            source.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT_S)
