"""Online emission: each window's candidates are stitched into tracks, and tracks into events.

Rules (STREAMING.md; the values in `StitchConfig` were chosen by measurement, see the README):

- **Match.** A window's candidates, best first, are matched to the tracks of their class by tIoU
  computed inside the window's span (a track longer than the window is compared by the part the
  window sees, so events longer than the window stay one track). A candidate mostly inside a
  better candidate of this window or a track of its class (``absorb_overlap`` of its length) is a
  duplicate (soft-NMS keeps such alternatives) and is dropped.
- **Track.** An unmatched candidate scoring at least ``threshold`` starts a pending track. A match
  refines the track's boundaries: a boundary at the window's edge is cut by the window, not seen,
  and only moves the end outwards (an ongoing event); seen boundaries are averaged, weighted by
  score. The track's score is its latest match's, the one with the most context.
- **Open.** A pending track is opened (a ``start`` record) once matched in ``confirm_windows``
  consecutive windows with a score of at least ``threshold``; one that misses a window is dropped.
- **Close.** An open track is closed (an ``end`` record, final) once its end lies ``close_after``
  behind the newest step, unless a candidate of its class adjoins it and reaches the newest
  steps (short of right context, the model places the end of an ongoing event early), for at most
  ``max_hold`` more. Closed tracks stay while windows see them and absorb their re-detections, so
  nothing is emitted twice and nothing emitted ever changes.
- **End of stream.** Open tracks close with what is known; pending tracks that were never missed
  and reach ``threshold`` are emitted too (the stream ended before they could be confirmed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..postprocess import Segments

DEFAULT_THRESHOLD = 0.3  # minimum score of an emitted event


@dataclass(frozen=True)
class StitchConfig:
    """How candidates become events; every time is in seconds."""

    threshold: float = DEFAULT_THRESHOLD  # minimum score of emitted events (and of new tracks)
    confirm_windows: int = 2  # consecutive windows that must see a track before it opens
    close_after: float = 1.0  # a track may close once its end lies this far behind the newest step
    hold_reach: float = 1.0  # ...unless a candidate of its class adjoins it and ends this near now
    max_hold: float = 4.0  # ...for at most this long
    match_iou: float = 0.3  # least tIoU (inside the window) between a candidate and its track
    absorb_overlap: float = 0.5  # a candidate this much inside a track of its class is a duplicate
    support_ratio: float = 0.5  # candidates from threshold * this up may match (not start) tracks
    edge_seconds: float = 0.5  # a boundary this close to the window's edge is cut by the window

    @property
    def candidate_floor(self) -> float:
        """Candidates scoring below this play no part (decoding may drop them early)."""
        return self.threshold * self.support_ratio


@dataclass
class Event:
    """One output record: ``type`` "start" (the event is confirmed) or "end" (final)."""

    type: str
    id: int
    label: str
    label_id: int
    start: float
    end: float | None  # None in a start record
    score: float
    emitted_at: float  # stream time of emission

    def to_record(self) -> dict:
        """The JSON-lines record of STREAMING.md (a start record has no "end")."""
        record = asdict(self)
        if self.type == "start":
            del record["end"]
        return record


@dataclass(eq=False)  # compared and hashed by identity
class _Track:
    label_id: int
    start: float
    end: float
    score: float  # score of the latest matching candidate (the best informed)
    id: int | None = None  # given when the track opens
    hits: int = 1  # consecutive windows that matched it
    closed: bool = False
    start_sum: float = 0.0  # score-weighted sums of observed (not cut) boundaries
    start_weight: float = 0.0
    end_sum: float = 0.0
    end_weight: float = 0.0


@dataclass
class _Window:
    start: float  # s, the start of its first step
    now: float  # s, the end of its newest step
    full: bool  # its first step is not the stream's first: its left edge cuts events


class Stitcher:
    """Turns the decoded candidates of successive windows into start and end events."""

    def __init__(self, classes: list[str], config: StitchConfig | None = None) -> None:
        self.classes = classes
        self.config = config or StitchConfig()
        self._tracks: list[_Track] = []
        self._next_id = 0

    def update(
        self, found: Segments, window_start: float, now: float, full: bool, emitted_at: float
    ) -> list[Event]:
        """Stitch one window's candidates (in stream seconds, within [window_start, now]).

        ``full``: the window does not begin at the stream's start. Returns the records it emits.
        """
        window = _Window(window_start, now, full)
        matched = self._match(found, window)
        for track in self._tracks:
            if track.id is None and track not in matched:
                track.hits = 0  # a pending track must be seen in consecutive windows
        self._tracks = [t for t in self._tracks if t.hits > 0 or t.id is not None]
        events: list[Event] = []
        config = self.config
        for track in sorted(self._tracks, key=lambda t: t.start):
            confirmed = track.hits >= config.confirm_windows and track.score >= config.threshold
            if track.id is None and confirmed:
                events.append(self._open(track, emitted_at))
            if track.id is None or track.closed:
                continue
            behind = now - track.end
            if behind >= config.close_after + config.max_hold or (
                behind >= config.close_after and not self._held(track, found, now)
            ):
                events.append(self._close(track, emitted_at))
        # closed tracks are kept while windows still see them, to absorb their re-detections
        self._tracks = [t for t in self._tracks if not t.closed or t.end > window_start]
        return events

    def flush(self, emitted_at: float) -> list[Event]:
        """End of stream: close open tracks, emit pending ones that reach the threshold."""
        events: list[Event] = []
        for track in sorted(self._tracks, key=lambda t: t.start):
            if track.closed:
                continue
            if track.id is None:
                if track.score < self.config.threshold:
                    continue
                events.append(self._open(track, emitted_at))
            events.append(self._close(track, emitted_at))
        self._tracks = []
        return events

    def _match(self, found: Segments, window: _Window) -> set[_Track]:
        """Match candidates to tracks (best candidate first); returns the tracks matched."""
        config = self.config
        matched: set[_Track] = set()
        kept: list[tuple[float, float, int]] = []  # this window's candidates that are no duplicate
        for k in np.argsort(-found.score, kind="stable"):
            start, end = float(found.start[k]), float(found.end[k])
            label, score = int(found.label[k]), float(found.score[k])
            if score < config.candidate_floor or end <= start:
                continue
            if self._covered(start, end, [(s, e) for s, e, c in kept if c == label]):
                continue  # a weaker duplicate (soft-NMS keeps those) of a better candidate
            kept.append((start, end, label))
            same_class = [t for t in self._tracks if t.label_id == label]
            best, best_iou = None, config.match_iou
            for track in same_class:
                iou = _clipped_iou(start, end, track, window)
                if track not in matched and iou >= best_iou:
                    best, best_iou = track, iou
            if best is not None:
                matched.add(best)
                if not best.closed:
                    best.hits += 1
                    self._refine(best, start, end, score, window)
            elif score >= config.threshold and not self._covered(
                start, end, [(t.start, t.end) for t in same_class]
            ):
                track = _Track(label, start, end, score)
                self._refine(track, start, end, score, window)
                self._tracks.append(track)
                matched.add(track)
        return matched

    def _held(self, track: _Track, found: Segments, now: float) -> bool:
        """Whether a candidate of the track's class adjoins it and reaches the newest steps: the
        event may go on while the model, short of right context, still places its end early."""
        config = self.config
        return bool(
            np.any(
                (found.label == track.label_id)
                & (found.score >= config.candidate_floor)
                & (found.end >= now - config.hold_reach)
                & (found.start <= track.end + config.edge_seconds)
                & (found.end > track.start)
            )
        )

    def _covered(self, start: float, end: float, spans: list[tuple[float, float]]) -> bool:
        """Whether one of ``spans`` holds ``absorb_overlap`` of [start, end]."""
        least = self.config.absorb_overlap * (end - start)
        return any(_overlap(start, end, s, e) >= least for s, e in spans)

    def _refine(self, track: _Track, start: float, end: float, score: float, w: _Window) -> None:
        """Update a track with a matching candidate (module docstring, "Track")."""
        edge = self.config.edge_seconds
        track.score = score
        if not (w.full and start <= w.start + edge):  # the start is observed
            track.start_sum += score * start
            track.start_weight += score
            track.start = track.start_sum / track.start_weight
        if end >= w.now - edge:  # cut by the newest step: the event goes on at least until `end`
            if end > track.end or track.end_weight == 0:
                track.end, track.end_sum, track.end_weight = end, 0.0, 0.0
        else:
            track.end_sum += score * end
            track.end_weight += score
            track.end = track.end_sum / track.end_weight

    def _open(self, track: _Track, emitted_at: float) -> Event:
        track.id = self._next_id
        self._next_id += 1
        return self._event(track, "start", None, emitted_at)

    def _close(self, track: _Track, emitted_at: float) -> Event:
        track.closed = True
        return self._event(track, "end", track.end, emitted_at)

    def _event(self, track: _Track, kind: str, end: float | None, emitted_at: float = 0.0) -> Event:
        return Event(
            type=kind,
            id=track.id if track.id is not None else -1,
            label=self.classes[track.label_id],
            label_id=track.label_id,
            start=round(track.start, 3),
            end=None if end is None else round(end, 3),
            score=round(track.score, 4),
            emitted_at=round(emitted_at, 3),
        )


def _overlap(start: float, end: float, other_start: float, other_end: float) -> float:
    return max(0.0, min(end, other_end) - max(start, other_start))


def _clipped_iou(start: float, end: float, track: _Track, window: _Window) -> float:
    """tIoU of a candidate and the part of ``track`` inside the window."""
    track_start, track_end = max(track.start, window.start), min(track.end, window.now)
    if track_end <= track_start:
        return 0.0
    inter = _overlap(start, end, track_start, track_end)
    union = (end - start) + (track_end - track_start) - inter
    return inter / union if union > 0 else 0.0
