"""The last seconds of one stream's frames and audio, from which an event's clip begins."""

from __future__ import annotations

from collections import deque

import cv2

from ..defaults import EVIDENCE_WIDTH
from ..sources.base import AudioBlock, Item, VideoFrame

MAX_WIDTH = EVIDENCE_WIDTH  # px: wider frames are kept scaled down to this width


class MediaRing:
    """Copies of a stream's items over the last ``seconds`` of stream time, at most ``max_bytes``
    (the oldest go first); frames wider than `MAX_WIDTH` are kept scaled down."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._items: deque[Item] = deque()
        self._bytes = 0

    def add(self, item: Item) -> Item:
        """Keep a copy of ``item``; returns the copy (what clips get)."""
        kept = _copy(item)
        self._items.append(kept)
        self._bytes += _size(kept)
        while len(self._items) > 1 and (
            kept.t - self._items[0].t > self.seconds or self._bytes > self.max_bytes
        ):
            self._bytes -= _size(self._items.popleft())
        return kept

    @property
    def newest(self) -> float | None:
        """Stream time reached by the newest item held (None while empty)."""
        return _end(self._items[-1]) if self._items else None

    def since(self, t: float) -> list[Item]:
        """The items held that reach ``t`` or later, oldest first."""
        return [item for item in self._items if _end(item) >= t]


def _copy(item: Item) -> Item:
    if isinstance(item, AudioBlock):
        return AudioBlock(item.t, item.samples.copy(), item.sample_rate)
    height, width = item.image.shape[:2]
    if width <= MAX_WIDTH:
        return VideoFrame(item.t, item.image.copy())
    size = (MAX_WIDTH, max(2, round(height * MAX_WIDTH / width)))
    return VideoFrame(item.t, cv2.resize(item.image, size, interpolation=cv2.INTER_AREA))


def _size(item: Item) -> int:
    return item.image.nbytes if isinstance(item, VideoFrame) else item.samples.nbytes


def _end(item: Item) -> float:
    return item.t + item.duration if isinstance(item, AudioBlock) else item.t
