"""A source whose items are also handed to a callback as they are read: how the evidence of many
streams sees their media (`MultiStreamEngine.run` has no per-item hook; its readers iterate the
sources that `StreamSpec.open` gives)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..sources.base import Item, MediaSource
from .multi import StreamSpec

Tap = Callable[[Item, str], None]  # (item, stream name)


class TappedSource(MediaSource):
    """``source``'s items, each handed to ``tap(item, name)`` before it goes on."""

    def __init__(self, source: MediaSource, tap: Tap, name: str) -> None:  # no base __init__:
        self._source, self._tap, self._name = source, tap, name  # clock and stats are source's
        self.description = source.description
        self.has_video, self.has_audio = source.has_video, source.has_audio
        self.is_live = source.is_live

    @property
    def clock(self):
        return self._source.clock

    @property
    def stats(self):
        return self._source.stats

    def __iter__(self) -> Iterator[Item]:
        for item in self._source:
            self._tap(item, self._name)
            yield item

    def close(self) -> None:
        self._source.close()


@dataclass(frozen=True)
class TappedSpec(StreamSpec):
    """A `StreamSpec` whose opened source is tapped (``tap`` None: not tapped)."""

    tap: Tap | None = None

    def open(self) -> MediaSource:
        source = super().open()
        return source if self.tap is None else TappedSource(source, self.tap, self.name)
