"""A live camera and microphone as one stream that, asked to, reopens both when either fails.

    source = ReopeningSource("0", "default", reconnect=True)
    for item in source: ...   # VideoFrame and AudioBlock items, across reopenings

Each opening is a `MergedSource` of a `CameraSource` and a `MicrophoneSource`. When one of them
stops (`SourceError`), the pair is closed and opened again, up to ``max_reopens`` times in a row
without an item between, waiting ``reopen_delay`` seconds times the attempt number. A reopened
pair continues the stream's clock, so the outage becomes an audio gap and a held frame downstream,
not a jump back to t = 0; the stats add up every opening.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from .base import Item, MediaSource, SourceError, SourceStats, StreamClock
from .camera import CameraSource
from .merge import MergedSource
from .microphone import MicrophoneSource

MAX_REOPENS = 5  # reopenings in a row, without an item between
REOPEN_DELAY_S = 1.0  # wait before a reopening, times its attempt number

log = logging.getLogger(__name__)


class ReopeningSource(MediaSource):
    """Camera ``camera`` and microphone ``mic`` (as `CameraSource` and `MicrophoneSource` take
    them); with ``reconnect`` the pair is reopened when either fails (module docstring)."""

    is_live = True

    def __init__(
        self,
        camera: str,
        mic: str,
        reconnect: bool = False,
        max_reopens: int = MAX_REOPENS,
        reopen_delay: float = REOPEN_DELAY_S,
    ) -> None:
        # No MediaSource.__init__: the clock is the first opening's, the stats add up all of them.
        self.camera, self.mic, self.reconnect = camera, mic, reconnect
        self.max_reopens, self.reopen_delay = max_reopens, reopen_delay
        self._source = self._open(None)
        self.clock = self._source.clock
        self.description = self._source.description
        self.has_video = self.has_audio = True
        self._past = SourceStats()  # the stats of the openings already replaced
        self._closed = False

    def _open(self, clock: StreamClock | None) -> MergedSource:
        microphone = MicrophoneSource(self.mic)
        try:
            camera = CameraSource(self.camera, reconnect=self.reconnect)
        except SourceError:
            microphone.close()
            raise
        return MergedSource(camera, microphone, clock=clock)

    @property
    def stats(self) -> SourceStats:
        now = self._source.stats
        return SourceStats(
            frames=self._past.frames + now.frames,
            audio_seconds=self._past.audio_seconds + now.audio_seconds,
            dropped_frames=self._past.dropped_frames + now.dropped_frames,
            overflows=self._past.overflows + now.overflows,
        )

    def __iter__(self) -> Iterator[Item]:
        failures = 0  # reopenings in a row, without an item between
        source: MergedSource | None = self._source
        while not self._closed:
            try:
                if source is None:
                    fresh = self._open(self.clock)
                    self._past = self.stats  # the failed opening's counts, kept
                    source = self._source = fresh
                for item in source:
                    failures = 0
                    yield item
                return
            except SourceError as error:
                if not self.reconnect or self._closed or failures >= self.max_reopens:
                    raise
                failures += 1
                log.warning("%s; reopening (attempt %d of %d)", error, failures, self.max_reopens)
                if source is not None:
                    source.close()
                    source = None
                time.sleep(self.reopen_delay * failures)

    def close(self) -> None:
        self._closed = True
        self._source.close()
