"""The streaming engine: timestamped frames and audio in, start and end events out.

    items ─► StepAssembler ─► extractors (once per step) ─► FeatureRing (last T steps)
          ─► every ``hop`` steps: step graph (or window graph) ─► decode + soft-NMS ─► Stitcher
          ─► events

Stream time is the sources' clock (t=0 at the first sample). A hop ends when step ``i``
completes with ``(i + 1) % hop == 0``. With a step graph (``loco_step.onnx``; models without
absolute positions) the hop's new steps go through it once (`StepRunner`) and the points of the
last T steps are decoded, each computed with the whole stream before it as context. Otherwise the
window graph runs over the last T steps (left-aligned with a padding mask while fewer exist). At
the end of the stream the steps not yet seen get one more run, then open events are closed.
Times that go back, long gaps and a modality that stops are handled by `Timeline` (a long gap or
a stall closes the stream so far and restarts it at the new time).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..config import DecodeConfig
from ..features.steps import Step, StepAssembler
from ..model_dir import ModelDir, WindowInfo
from ..postprocess import Segments, candidates, decode, steps_to_seconds
from ..sources.base import Item, MediaSource, VideoFrame
from .ring_buffer import FeatureRing
from .step_runner import StepRunner
from .stitch import Event, StitchConfig, Stitcher
from .timeline import StreamStalled, Timeline, Verdict

Clock = Callable[[], float]  # stream time of "now", for live sources


@dataclass
class WindowInputs:
    """One hop's window: the window graph's inputs, or the step graph's outputs already computed
    (``outputs``: scores (N, C), segments (N, 2), the points' positions (N,)); rows are steps
    first_step..next_step-1."""

    inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # visual (1,T,Dv), audio, mask (1,T)
    first_step: int
    next_step: int
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # + positions (N,)


@dataclass
class StreamStats:
    """Counters of one stream; ``real_time_factor`` is compute time over media time."""

    frames: int = 0  # video frames received
    audio_seconds: float = 0.0  # audio received
    steps: int = 0  # steps extracted (each exactly once)
    windows: int = 0  # hops decoded (a window graph run, or the step graph's calls of a hop)
    events: int = 0  # final (end) events emitted
    dropped_frames: int = 0  # frames the camera dropped because processing fell behind
    audio_gap_seconds: float = 0.0  # missing audio, filled with silence
    audio_overflows: int = 0  # times the microphone lost samples
    clock_regressions: int = 0  # items dropped (audio: in part) because their time went back
    restarts: int = 0  # times a gap of over MAX_FILL_SECONDS or a stall restarted the stream
    skipped_seconds: float = 0.0  # stream time not analysed because of restarts
    stalls: int = 0  # times one modality ran MAX_AHEAD_SECONDS ahead of the other
    media_seconds: float = 0.0  # stream time covered by complete steps
    compute_seconds: float = 0.0  # extraction, windows, decoding, stitching
    extract_seconds: float = 0.0  # of which the extractors (once per step)
    window_seconds: float = 0.0  # of which the window or step graph (once per hop)
    wall_seconds: float = 0.0  # the whole run, reading the source included

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of media (below 1: faster than real time)."""
        return self.compute_seconds / self.media_seconds if self.media_seconds else 0.0

    @property
    def wall_factor(self) -> float:
        """Wall time per second of media: end to end for a file read as fast as possible."""
        return self.wall_seconds / self.media_seconds if self.media_seconds else 0.0

    def to_record(self, emitted_at: float) -> dict:
        record = {"type": "stats", **dataclasses.asdict(self)}
        record["real_time_factor"] = self.real_time_factor
        record["wall_factor"] = self.wall_factor
        record = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
        return {**record, "emitted_at": round(emitted_at, 3)}

    def line(self) -> str:
        """One readable line for the terminal: how fast detection runs, then the counters."""
        return (
            f"stats: {self._speed()}; {self.frames} frames ({self.dropped_frames} dropped), "
            f"{self.steps} steps, {self.windows} windows, {self.events} events; audio gaps "
            f"{self.audio_gap_seconds:.2f} s ({self.audio_overflows} overflows), "
            f"{self.clock_regressions} clock regressions, {self.restarts} restarts "
            f"({self.skipped_seconds:.1f} s skipped); extractors "
            f"{self._per(self.extract_seconds, self.steps)} ms a step, window "
            f"{self._per(self.window_seconds, self.windows)} ms"
        )

    def _speed(self) -> str:
        """``20.0 s of media in 20.1 s, of which detecting took 0.5 s (40x faster than real
        time)``: the time taken includes waiting for a paced or live source; detecting does not."""
        text = f"{self.media_seconds:.1f} s of media"
        if self.wall_seconds:
            text += f" in {self.wall_seconds:.1f} s, of which detecting took"
        else:
            text += ", detecting took"
        text += f" {self.compute_seconds:.1f} s"
        if self.compute_seconds and self.media_seconds:
            text += f" ({_against_real_time(self.media_seconds / self.compute_seconds)})"
        return text

    @staticmethod
    def _per(seconds: float, count: int) -> str:
        return f"{1000 * seconds / count:.1f}" if count else "-"


def _against_real_time(speed: float) -> str:
    """``16x faster than real time`` for ``speed`` seconds of media per second of work."""
    if speed < 1:
        return f"{1 / speed:.1f}x slower than real time"
    return (
        f"{speed:.0f}x faster than real time"
        if speed >= 10
        else f"{speed:.1f}x faster than real time"
    )


class StreamEngine:
    """Push `VideoFrame`s and `AudioBlock`s (16 kHz mono) in stream time; get `Event`s back.

    ``hop`` (steps between windows, 1 to the window) defaults to the model's ``hop_steps``. The
    step graph runs when the model has one and ``hop`` is a multiple of its ``step_hop``.
    ``clock`` gives the stream time of emission for live sources; without it ``emitted_at`` is
    the data's time (the end of the newest step), as for a file read faster than real time. Not
    thread-safe: one caller at a time (`Detector` adds a lock).
    """

    def __init__(
        self,
        model: ModelDir,
        stitch: StitchConfig | None = None,
        hop: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        info = model.info
        self.model = model
        self.hop = info.hop_steps if hop is None else hop
        if isinstance(self.hop, bool) or not isinstance(self.hop, (int, np.integer)):
            raise ValueError(f"hop must be a whole number of steps, got {self.hop!r}")
        if not 1 <= self.hop <= info.window:
            raise ValueError(
                f"hop must be between 1 and the window ({info.window} steps), got {self.hop}: "
                "a longer hop leaves steps that no window sees"
            )
        step_graph = getattr(model, "step_graph", None)
        self.step_graph = step_graph if step_graph and self.hop % info.step_hop == 0 else None
        self.runner: StepRunner | None = None  # made at the stream's first step
        self.stitcher = Stitcher(info.classes, stitch)
        floor = max(info.decode.score_threshold, self.stitcher.config.candidate_floor)
        self._decode = dataclasses.replace(info.decode, score_threshold=floor)
        self.clock = clock
        self.assembler = StepAssembler(model.spec)
        self.ring = FeatureRing(info.window, info.visual_dim, info.audio_dim)
        self.stats = StreamStats()
        self.timeline = Timeline()
        self._first_step = 0  # the stream's first step (after a restart, the restart's)
        self._seen_by_window = 0  # steps before this one were seen by some window
        self._past_gap_seconds = 0.0  # audio gaps of the assemblers before a restart
        self._finished = False

    @property
    def now(self) -> float:
        """Stream time of the end of the newest complete step."""
        return self.ring.next_step * self.model.info.step_seconds

    def push(self, item: Item) -> list[Event]:
        """Add one frame or audio block; returns the events that became ready."""
        began = time.perf_counter()
        if isinstance(item, VideoFrame):
            self.stats.frames += 1
        else:
            self.stats.audio_seconds += item.duration
        verdict = self.timeline.admit(item, self.now)
        events: list[Event] = []
        if verdict in (Verdict.RESTART, Verdict.STALL):
            events += self._restart(item.t)
        if verdict is not Verdict.DROP:
            self.assembler.add(item)
            events += self._process(self.assembler.steps())
        self.stats.clock_regressions = self.timeline.regressions
        self.stats.stalls = self.timeline.stalls
        self.stats.compute_seconds += time.perf_counter() - began
        return events

    def take_stall(self) -> StreamStalled | None:
        """A stall (one modality stopped) that began since the last call, to report, if any."""
        message = self.timeline.take_stall()
        return StreamStalled(message) if message else None

    def finish(self) -> list[Event]:
        """End of stream: the last steps, a last window if steps are unseen, open events closed."""
        if self._finished:
            return []
        self._finished = True
        began = time.perf_counter()
        events = self._close_stream()
        self.stats.compute_seconds += time.perf_counter() - began
        return events

    def _close_stream(self) -> list[Event]:
        """The last steps, a last window if steps are unseen, open events closed."""
        self.assembler.end()
        events = self._process(self.assembler.steps())
        if self.ring.next_step > self._seen_by_window:
            events += self._window()
        return events + self._count(self.stitcher.flush(self.emission_time()))

    def _restart(self, t: float) -> list[Event]:
        """Close the stream so far and start a new one at the step holding time ``t``."""
        events = self._close_stream()
        info = self.model.info
        first = max(int(t // info.step_seconds), self.ring.next_step)
        self.stats.restarts += 1
        self.stats.skipped_seconds += (first - self.ring.next_step) * info.step_seconds
        self._past_gap_seconds += self.assembler.audio_gap_seconds
        self.assembler = StepAssembler(self.model.spec, first_step=first)
        self.ring = FeatureRing(info.window, info.visual_dim, info.audio_dim, first_step=first)
        self._first_step = self._seen_by_window = first
        self.runner = None
        return events

    def run(
        self,
        source: MediaSource,
        on_event: Callable[[Event], None],
        should_stop: Callable[[], bool] = lambda: False,
        on_item: Callable[[Item], None] | None = None,
    ) -> StreamStats:
        """Stream ``source`` until it ends or ``should_stop()``; ``on_event`` gets every event as
        it is emitted, ``on_item`` every item before it is processed. However the loop ends (a
        source error included), the stream is finished and its last events are handed out. A
        stall (one modality stopped) raises `StreamStalled` after its events. The source is not
        closed here."""
        began = time.perf_counter()
        try:
            for item in source:
                if on_item is not None:
                    on_item(item)
                for event in self.push(item):
                    on_event(event)
                stall = self.take_stall()
                if stall is not None:
                    raise stall
                self._take_source_stats(source, began)
                if should_stop():
                    break
        finally:
            self._take_source_stats(source, began)
            for event in self.finish():
                on_event(event)
            self.stats.wall_seconds = time.perf_counter() - began
        return self.stats

    def _take_source_stats(self, source: MediaSource, began: float) -> None:
        source_stats = source.stats
        self.stats.dropped_frames = source_stats.dropped_frames
        self.stats.audio_overflows = source_stats.overflows
        self.stats.wall_seconds = time.perf_counter() - began

    def _process(self, steps: Iterable[Step]) -> list[Event]:
        events: list[Event] = []
        for step in steps:
            began = time.perf_counter()
            visual, audio = self.model.step_features(step)  # (Dv,), (Da,)
            self.stats.extract_seconds += time.perf_counter() - began
            if self._add_features(step.index, visual, audio):
                events += self._window()
        self._take_gap_stats()
        return events

    def _add_features(self, index: int, visual: np.ndarray, audio: np.ndarray) -> bool:
        """Put step ``index``'s features (Dv,), (Da,) in the ring; whether a window is due."""
        self.ring.push(index, visual, audio)
        self.stats.steps += 1
        self.stats.media_seconds = self.now
        return self.ring.next_step % self.hop == 0

    def _take_gap_stats(self) -> None:
        self.stats.audio_gap_seconds = self._past_gap_seconds + self.assembler.audio_gap_seconds

    def _window(self) -> list[Event]:
        """Run the window graph over the last T steps and stitch what it finds."""
        window = self._window_inputs()
        if window.outputs is not None:
            return self._stitch_window(window, *window.outputs)
        began = time.perf_counter()
        scores, segments = self.model.run_window(*window.inputs)  # (1,N,C), (1,N,2)
        self.stats.window_seconds += time.perf_counter() - began
        return self._stitch_window(window, scores[0], segments[0], self.model.info.point_positions)

    def _window_inputs(self) -> WindowInputs:
        """The window of the last T steps as it is now, to run now or later; with a step graph,
        its outputs, the hop's new steps run through it now."""
        first, now = self.ring.first_step, self.ring.next_step
        if self.step_graph is None:
            visual, audio, mask = self.ring.window_inputs()  # (1,T,Dv), (1,T,Da), (1,T)
            return WindowInputs((visual, audio, mask), first, now)
        began = time.perf_counter()
        if self.runner is None:
            self.runner = StepRunner(self.step_graph, self.model.info, self._first_step)
        visual, audio = self.ring.rows(self.runner.origin + self.runner.steps, now)
        self.runner.push(visual, audio)
        outputs = self.runner.window_outputs(first)
        self.stats.window_seconds += time.perf_counter() - began
        return WindowInputs(None, first, now, outputs)

    def _stitch_window(
        self, window: WindowInputs, scores: np.ndarray, segments: np.ndarray, positions: np.ndarray
    ) -> list[Event]:
        """Decode a window's outputs, scores (N, C) and segments (N, 2) of points at positions
        (N,), and stitch them."""
        info = self.model.info
        first, now = window.first_step, window.next_step * info.step_seconds
        outputs = scores, segments, positions
        found = decode_window(*outputs, first, now, info, self._decode)
        ongoing = ongoing_predictions(*outputs, first, now, info, self.stitcher.config)
        self.stats.windows += 1
        self._seen_by_window = window.next_step
        emitted_at = self._emission_at(now)
        window_start = first * info.step_seconds
        # the window graph's left edge cuts events; the step graph's points see the whole stream
        cut = first > self._first_step and self.step_graph is None
        events = self.stitcher.update(found, window_start, now, cut, emitted_at, ongoing)
        return self._count(events)

    def emission_time(self) -> float:
        """Stream time of "now": the clock's for a live source, else the newest step's end."""
        return self._emission_at(self.now)

    def _emission_at(self, now: float) -> float:
        return max(now, self.clock()) if self.clock is not None else now

    def _count(self, events: list[Event]) -> list[Event]:
        self.stats.events += sum(e.type == "end" for e in events)
        return events


def decode_window(
    scores: np.ndarray,
    segments: np.ndarray,
    positions: np.ndarray,
    first_step: int,
    now: float,
    info: WindowInfo,
    config: DecodeConfig,
) -> Segments:
    """One window's outputs, scores (N, C) and segments (N, 2) of points at positions (N,), in
    window steps, decoded into candidates in stream seconds within [0, now] (the window's row 0
    is step ``first_step``)."""
    return _in_stream_seconds(decode(scores, segments, positions, config), first_step, now, info)


def ongoing_predictions(
    scores: np.ndarray,
    segments: np.ndarray,
    positions: np.ndarray,
    first_step: int,
    now: float,
    info: WindowInfo,
    config: StitchConfig,
) -> Segments:
    """What the window's raw outputs, scores (N, C) and segments (N, 2), say goes on now: the
    point predictions (before soft-NMS, which keeps only the best of a class's overlapping ones)
    scoring at least ``config.present_score`` whose end lies within ``config.reach_seconds`` of
    ``now``, in stream seconds (the stitcher's closing rule, `loco_stream.stream.stitch`)."""
    threshold = dataclasses.replace(info.decode, score_threshold=config.present_score)
    found = candidates(scores, segments, positions, threshold)
    raw = _in_stream_seconds(found, first_step, now, info)
    return raw.take(np.flatnonzero(raw.end >= now - config.reach_seconds))


def _in_stream_seconds(found: Segments, first_step: int, now: float, info: WindowInfo) -> Segments:
    """Segments in window steps (row 0 is step ``first_step``) -> stream seconds in [0, now]."""
    in_stream = found.shift(first_step)
    return steps_to_seconds(in_stream, info.step_seconds, info.step_offset, duration=now)
