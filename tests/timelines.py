"""Candidates shaped like the model's real output, for the stitching tests (no tests here).

Recorded windows of the trained default model on 150-s clips (``benchmarks/bench_stream.py``)
show what a live window's decoded candidates look like, and `ModelLikeWindows` imitates it:

- an ongoing event's end is placed early in about half of the windows, by a gap that persists
  from window to window (median 0.5 s, 9% beyond 2 s), and reaches "now" otherwise;
- an event that began before a full window has its start placed a few seconds *inside* the
  window (up to about 4.5 s), not at the edge;
- boundaries and scores jitter from window to window; a window now and then misses an event;
- soft-NMS leaves weaker, shorter alternatives of each event, sometimes one candidate spanning two
  neighbours of a class, and weak junk of any class;
- the longest candidate it places spans about 0.8 of the window (52 of 64 s: events longer than
  the training clips): of an event that fills more of the window, it keeps in most windows (60-85%)
  a candidate of that length from the event's seen start, so its end lies a fifth of the window
  before "now" or before the true end, and decays the candidates that reach further;
- before soft-NMS, some raw prediction of an ongoing event reaches "now" with a high score in
  96% of the windows during the 150-s clips' events; the misses come in runs of one to eight
  model steps, mostly in long events (imitated: a stall begins in 1% of the seconds of any event
  and lasts 3 steps on average). One still reaches "now" after the event ended in about 75% of
  the windows within 1 s of its end, 25% within 2 s, 10% within 3 s and 3% later (``ongoing``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loco_stream.postprocess import Segments
from loco_stream.stream.stitch import Event, StitchConfig, Stitcher

TrueEvent = tuple[float, float, int]  # (start, end, label_id), seconds
STEP_SECONDS = 0.25  # the model's step, at which the recorded rates below were measured


@dataclass
class ModelLikeWindows:
    """Decoded candidates of successive windows over a timeline of true events."""

    truth: list[TrueEvent]
    seed: int = 0
    early_share: float = 0.5  # share of ongoing events whose end the model places early
    max_gap: float = 2.5  # s, the largest early placement of an ongoing event's end
    cut_inside: float = 4.5  # s, how far inside a full window a cut start may be placed
    jitter: float = 0.15  # s, boundary noise of an event that is seen
    dropout: float = 0.05  # chance that a window misses an event
    merge_share: float = 0.1  # chance of a candidate spanning two close events of one class
    junk: int = 2  # weak candidates of random classes per window
    num_classes: int = 3
    stall_start: float = 0.0025  # chance per model step (0.25 s) that the raw predictions stall
    stall_keep: float = 0.7  # chance per model step that a stall goes on
    linger: tuple[float, ...] = (0.75, 0.25, 0.1, 0.03)  # raw predictions reaching now, by s after
    longest: float = 12.8  # s, the longest candidate (0.8 of the tests' 16-s windows)
    capped_share: float = 0.7  # chance that a window caps a longer event's candidate at ``longest``
    _base_gaps: dict[int, float] = field(default_factory=dict)  # event -> its early-end gap
    _gaps: dict[int, float] = field(default_factory=dict)  # event -> the latest window's gap
    _stalled: set[int] = field(default_factory=set)  # events whose raw predictions stall now
    ongoing: Segments = field(default_factory=Segments.empty)  # the latest window's (see above)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.scores = {i: float(self.rng.uniform(0.55, 0.95)) for i in range(len(self.truth))}
        self._last_now = 0.0

    def window(self, window_start: float, now: float) -> Segments:
        """What the decoded window over [window_start, now] holds (windows come in time order);
        ``ongoing`` holds its raw predictions that reach "now"."""
        rng, rows = self.rng, []
        self.ongoing = self._reaching_now(window_start, now)
        for i, (start, end, label) in enumerate(self.truth):
            if min(end, now) - max(start, window_start) < 0.5 or rng.random() < self.dropout:
                continue
            s_hat, e_hat = self._bounds(i, start, end, window_start, now)
            if e_hat - s_hat < 0.25:  # an onset the model does not show yet
                continue
            score = float(np.clip(self.scores[i] + rng.normal(0, 0.05), 0.01, 1.0))
            rows.append((s_hat, e_hat, label, score))
            cut = s_hat + rng.uniform(0.2, 0.6) * (e_hat - s_hat)  # a soft-NMS alternative
            rows.append((cut, e_hat, label, score * rng.uniform(0.2, 0.6)))
            if rng.random() < self.merge_share:
                later = [t for t in self.truth if t[2] == label and 0 < t[0] - end < 3.0]
                if later and later[0][0] < now:
                    merged_end = min(later[0][1], now)
                    rows.append((s_hat, merged_end, label, score * rng.uniform(0.5, 0.9)))
        for _ in range(self.junk):
            s = rng.uniform(window_start, now)
            label = int(rng.integers(self.num_classes))
            rows.append((s, min(now, s + rng.uniform(0.2, 2.0)), label, rng.uniform(0.02, 0.2)))
        self._last_now = now
        if not rows:
            return Segments.empty()
        start, end, label, score = (np.array(column) for column in zip(*rows, strict=True))
        start, end = np.clip(start, window_start, now), np.clip(end, window_start, now)
        return Segments(start, end, label.astype(np.int64), score, (start + end) / 2)

    def _reaching_now(self, window_start: float, now: float) -> Segments:
        """Raw predictions, each [seen start, now], of the events that the model believes go on."""
        rng, rows = self.rng, []
        for i, (start, end, label) in enumerate(self.truth):
            if start > now - 0.5 or end < window_start:
                continue
            if end > now:  # ongoing: present unless a stall goes on or begins
                steps = max(1.0, (now - self._last_now) / STEP_SECONDS)  # since the last window
                if i in self._stalled:
                    stalls = rng.random() < self.stall_keep**steps
                else:
                    stalls = rng.random() < 1 - (1 - self.stall_start) ** steps
                if stalls:
                    self._stalled.add(i)
                else:
                    self._stalled.discard(i)
                present = not stalls
            else:
                since = int(now - end)
                present = rng.random() < self.linger[min(since, len(self.linger) - 1)]
            if present:
                score = float(np.clip(self.scores[i] + rng.normal(0, 0.05), 0.01, 1.0))
                rows.append((max(start, window_start), now, label, score))
        if not rows:
            return Segments.empty()
        start, end, label, score = (np.array(column) for column in zip(*rows, strict=True))
        return Segments(start, end, label.astype(np.int64), score, (start + end) / 2)

    def _bounds(
        self, i: int, start: float, end: float, window_start: float, now: float
    ) -> tuple[float, float]:
        rng = self.rng
        if window_start > 0 and start < window_start:  # cut by a full window's left edge
            inside = min(self.cut_inside, 0.5 * (min(end, now) - window_start))
            s_hat = window_start + rng.uniform(0.0, inside)
        else:
            s_hat = start + rng.normal(0, self.jitter)
        if end > now - 0.5:  # ongoing (or just over): the model lacks right context
            if i not in self._gaps:
                early = rng.random() < self.early_share
                self._base_gaps[i] = float(rng.uniform(0.3, self.max_gap)) if early else 0.0
                self._gaps[i] = self._base_gaps[i]
            # the gap wanders around its event's base, correlated over about 3 s
            base, keep = self._base_gaps[i], 0.7 ** (now - self._last_now)
            wander = rng.normal(0, 0.3 * np.sqrt(1 - keep**2))
            self._gaps[i] = base + keep * (self._gaps[i] - base) + wander
            e_hat = now - max(0.0, self._gaps[i])
        else:
            e_hat = end + rng.normal(0, self.jitter)
        if e_hat - s_hat > self.longest and rng.random() < self.capped_share:
            e_hat = s_hat + self.longest  # the longest candidate it places, from the seen start
        return s_hat, min(e_hat, now)


def stream_windows(
    windows: ModelLikeWindows,
    duration: float,
    config: StitchConfig | None = None,
    hop: float = 1.0,
    window_seconds: float = 16.0,
    classes: list[str] | None = None,
) -> list[Event]:
    """Stitch a window every ``hop`` s over ``duration`` s (the last one at the end), then flush."""
    names = classes or [f"class {k}" for k in range(windows.num_classes)]
    stitcher = Stitcher(names, config or StitchConfig())
    events: list[Event] = []
    times = list(np.arange(hop, duration, hop)) + [duration]
    for now in times:
        start = max(0.0, now - window_seconds)
        found = windows.window(start, now)
        events += stitcher.update(found, start, now, start > 0, now, windows.ongoing)
    return events + stitcher.flush(emitted_at=duration)
