"""The clip encoder's share of the CPU: it may spend at most a given share of what the rest of
the process spends (decoding, the model, the other sinks).

A token bucket in CPU seconds: every second of CPU the rest of the process uses earns the
encoder ``share`` seconds, every second the encoder uses costs one. While the bucket is not
empty the encoder takes every frame; when it is, it takes fewer (`Recording` keeps a floor of
frames and all of the sound). The bucket starts with the share of what the process spent
before it (loading the model; FIRST_SAVED_CPU_SECONDS at most), and holds at most
``most_saved`` seconds, so a quiet hour buys a burst of full-rate clips, not an hour of them.
Over any run the encoder spends at most ``share`` of the rest, plus what it started with, plus
one frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MOST_SAVED_CPU_SECONDS = 1.0  # what a quiet stream saves up for the next busy one
FIRST_SAVED_CPU_SECONDS = 0.1  # the most it starts with (its share of the process's start)


class CpuBudget:
    """The encoder thread's allowance; call `allows` from that thread. ``process_clock`` is the
    CPU time of the whole process, ``own_clock`` that of the calling thread (seconds)."""

    def __init__(
        self,
        share: float,
        most_saved: float = MOST_SAVED_CPU_SECONDS,
        process_clock: Callable[[], float] = time.process_time,
        own_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.share = share
        self.most_saved = most_saved
        self._process_clock, self._own_clock = process_clock, own_clock
        self._own = own_clock()
        self._rest = process_clock() - self._own  # the rest of the process, so far
        # CPU seconds the encoder may still spend: its share of what the process spent before
        # (loading the model), so the first clips need not wait for the stream to earn them
        self.saved = min(FIRST_SAVED_CPU_SECONDS, most_saved, share * self._rest)

    def allows(self) -> bool:
        """Whether the encoder is within its share now (its spending since the last call and
        the rest's are accounted first)."""
        own = self._own_clock()
        rest = max(self._rest, self._process_clock() - own)  # the two clocks read apart
        earned = self.share * (rest - self._rest)
        self.saved = min(self.most_saved, self.saved + earned - (own - self._own))
        self._own, self._rest = own, rest
        return self.saved > 0
