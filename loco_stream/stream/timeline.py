"""The stream's clock as the engine sees it: times that go back, long gaps, a modality that stops.

Each frame and audio block is admitted here before it reaches the step assembler:

- **Back in time.** A frame earlier than the previous frame, or an audio block that starts before
  the audio already received ends (beyond `AUDIO_JITTER_SECONDS`), or an item from before a
  restart: dropped (for audio, the part already covered), counted as a clock regression, and
  warned about once per stream.
- **A long gap.** A modality whose next item comes more than `MAX_FILL_SECONDS` after its previous
  one (or after the stream's start): the stream so far is closed (its events ended) and a new one
  starts at that item's time; nothing is computed for the gap. Shorter gaps are filled (silence,
  the last picture held), as before.
- **A stall.** A modality that runs more than `MAX_AHEAD_SECONDS` ahead of the other one (which
  stopped) is buffered no further: the stream restarts at the newest item, so memory stays
  bounded, and the stall is reported once, until the other modality comes back.
- **Non-finite audio** never reaches a graph: a block with NaN or Inf samples is a `ValueError`.
"""

from __future__ import annotations

import enum
import warnings

import numpy as np

from ..features.steps import AUDIO_JITTER_SECONDS
from ..sources.base import AudioBlock, Item, VideoFrame

MAX_FILL_SECONDS = 10.0  # a gap in one modality up to this long is filled; a longer one restarts
MAX_AHEAD_SECONDS = 30.0  # one modality buffered this far ahead of the other: the stream stalls
_NAMES = {VideoFrame: "video", AudioBlock: "audio"}


class StreamStalled(RuntimeError):
    """One modality stopped while the other went on: the message says which, since when."""


class Verdict(enum.Enum):
    KEEP = "keep"  # add the item
    DROP = "drop"  # it went back in time: drop it
    RESTART = "restart"  # close the stream so far, start a new one at the item, add it
    STALL = "stall"  # the same, because the other modality stopped


class Timeline:
    """Admits the items of one stream (module docstring); counts what it drops or skips."""

    def __init__(self) -> None:
        self.latest = {VideoFrame: 0.0, AudioBlock: 0.0}  # end of each kind's newest data, s
        self.regressions = 0  # items (partly) dropped because they went back in time
        self.stalls = 0  # times one modality ran MAX_AHEAD_SECONDS ahead of the other
        self.stall_message: str | None = None  # a stall to report, taken by `take_stall`
        self._stalled_kind: type | None = None  # the modality missing in the current stall
        self._warned = False

    def admit(self, item: Item, now: float) -> Verdict:
        """What to do with ``item``, given ``now``: the end of the stream's newest complete step."""
        kind = type(item)
        start, end = item.t, item.t
        if isinstance(item, AudioBlock):
            if not np.isfinite(item.samples).all():
                raise ValueError(
                    f"the audio block at {item.t:.3f} s holds NaN or Inf samples; audio must be "
                    "finite numbers in [-1, 1]"
                )
            end = item.t + item.duration
        previous = self.latest[kind]
        tolerance = AUDIO_JITTER_SECONDS if kind is AudioBlock else 0.0
        if start < previous - tolerance:
            self._regressed(item, previous)
            if end <= previous:
                return Verdict.DROP
        if kind is self._stalled_kind:  # the missing modality is back
            self._stalled_kind = None
        if start - previous > MAX_FILL_SECONDS:
            self.latest = {VideoFrame: start, AudioBlock: start}
            self.latest[kind] = end
            return Verdict.RESTART
        self.latest[kind] = max(previous, end)
        if self.latest[kind] - now > MAX_AHEAD_SECONDS:
            other = AudioBlock if kind is VideoFrame else VideoFrame
            self.stalls += 1
            if self._stalled_kind is None:
                self._stalled_kind = other
                since = self.latest[other]  # the end of the missing modality's data
                self.stall_message = (
                    f"the stream stalled: no {_NAMES[other]} after {since:.2f} s while "
                    f"{_NAMES[kind]} went on to {end:.2f} s; that stretch was dropped and the "
                    f"stream goes on when {_NAMES[other]} comes back"
                )
            self.latest = {VideoFrame: start, AudioBlock: start}
            self.latest[kind] = end
            return Verdict.STALL
        return Verdict.KEEP

    def take_stall(self) -> str | None:
        """The message of a stall that began since the last call, if any."""
        message, self.stall_message = self.stall_message, None
        return message

    def _regressed(self, item: Item, previous: float) -> None:
        self.regressions += 1
        if self._warned:
            return
        self._warned = True
        what = "a frame" if isinstance(item, VideoFrame) else "an audio block"
        warnings.warn(
            f"the source's clock went backwards: {what} at {item.t:.3f} s came after "
            f"{_NAMES[type(item)]} up to {previous:.3f} s; such items are dropped and counted in "
            "the stats (clock_regressions); warned once",
            RuntimeWarning,
            stacklevel=4,
        )
