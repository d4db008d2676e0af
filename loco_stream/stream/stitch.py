"""Online emission: each window's candidates are stitched into tracks, and tracks into events.

A window sees the last T steps, [window_start, now]. Its candidates (decoded, soft-NMS'd, in
stream seconds) are what the model believes *now*: without right context it often places the end
of an ongoing event early (about 1 s before "now", steadily, window after window), and when the
window is full its left edge cuts the start of an event that began before it. The rules below hold
for that (the values in `StitchConfig` were chosen by replaying windows: docs/stitching.md):

- **One candidate per event and window.** Candidates are taken best first; one whose span is at
  least ``absorb_overlap`` covered by better candidates of its class (soft-NMS keeps such
  alternatives), or that spans two tracks of its class (a merge of neighbours), is dropped.
- **Match.** A candidate joins the track of its class it overlaps most (tIoU at least
  ``match_iou``, the track clipped to the window, so an event longer than the window stays one
  track); each track takes at most one candidate a window. One that begins within
  ``edge_seconds`` of a live track's end is that track going on. One that overlaps no live track
  starts a pending track if it reaches ``threshold`` and its start is seen or it goes on now (what
  is left of an event at a full window's left edge, seen only as it leaves, starts nothing).
- **Closed tracks are final.** A candidate overlapping a closed track of its class, or beginning
  less than ``close_after`` after it, is cut to begin where that track ended, and kept only if
  ``close_after`` of it remain (a continuation, not a jittered end or a soft-NMS alternative): a
  stretch that was emitted is never emitted again.
- **Start.** A candidate whose start lies within ``edge_seconds`` of a full window's left edge has
  its start cut, not seen. While a track is pending, its start is the score-weighted mean of the
  starts seen; the ``start`` record fixes it, and the ``end`` record repeats it.
- **Peak.** A track keeps the moment its best-scoring candidate was scored at (the point of the
  window whose score it is), held within its span: the ``end`` record's ``peak``, where an
  event's snapshot is taken.
- **End.** A track's end is its latest candidate's (the one with the most right context), held
  before the start of a later track of its class (and a pending start after the end of an
  earlier one), so that events of one class never overlap.
- **Open.** A pending track opens (a ``start`` record) once matched in ``confirm_windows``
  consecutive windows with a score of at least ``threshold``; one that misses a window, or whose
  end lies ``stale_after`` behind the newest step (a past stretch that a weak candidate wavers
  over), is dropped: nothing is reported long after it happened.
- **Goes on.** The window's raw predictions (before soft-NMS:
  `loco_stream.stream.engine.ongoing_predictions`) that reach within ``reach_seconds`` of "now"
  with ``present_score`` say which tracks go on: one of its class that overlaps a track (up to
  where such predictions last reached it, its ``present``) and no other live track of its class
  more. The decoded end cannot tell: while an event goes on, soft-NMS often keeps a candidate of
  it that ends early and decays those that reach now.
- **Long tracks.** A track that went on for ``long_event`` seconds ends no earlier than its
  ``present``: the model places no candidate much longer than the events it was trained on (52 s
  of a 64-s window, after clips of at most 60 s), so for an event that fills the window it keeps
  one of that length from the window's left edge, ending a fifth of the window before now. Its
  end record holds its end to the furthest end its candidates reached, since raw predictions
  linger for a window or two after an event.
- **Close.** An open track closes (an ``end`` record, final) once its end lies ``close_after``
  behind the newest step and: a short track, once nothing says it goes on; a long track (and any
  track where raw predictions are unknown, ``ongoing`` None), once its end stood still: neither
  it nor the furthest end that its candidates reach (soft-NMS alternatives included) moved
  forward by ``end_tolerance`` in the last ``settle`` seconds. In the middle of a long event the
  model now and then stops reaching "now" for a few windows, which must not cut it. A track that
  no candidate matches closes once its ``present`` and end lie ``silence`` behind.
- **End of stream.** Open tracks close with what is known; pending tracks that were never missed
  and reach ``threshold`` are emitted too (the stream ended before they could be confirmed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..defaults import DEFAULT_THRESHOLD
from ..postprocess import Segments, temporal_iou


@dataclass(frozen=True)
class StitchConfig:
    """How candidates become events; every time is in seconds."""

    threshold: float = DEFAULT_THRESHOLD  # minimum score of emitted events (and of new tracks)
    confirm_windows: int = 2  # consecutive windows that must see a track before it opens
    close_after: float = 0.5  # an open track closes once its end lies this far behind now...
    present_score: float = 0.35  # ...and no raw prediction reaching now scores this over it...
    reach_seconds: float = 0.5  # ...("now": within this of the newest step)
    long_event: float = 15.0  # tracks this long end no earlier than raw predictions reach, and...
    settle: float = 2.0  # ...close once their end has stood still this long
    silence: float = 3.0  # a track that no candidate matches closes this far behind its end
    stale_after: float = 4.0  # a pending track whose end lies this far behind now is dropped
    match_iou: float = 0.3  # least tIoU (inside the window) between a candidate and its track
    absorb_overlap: float = 0.5  # share of a candidate inside better ones that makes it a duplicate
    support_ratio: float = 0.5  # candidates from threshold * this up may match (not start) tracks
    edge_seconds: float = 0.5  # a start this close to a full window's left edge is cut, not seen
    end_tolerance: float = 0.5  # an end that moves forward less than this in ``settle`` stands

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
    peak: float | None = None  # end records: the moment of the best score (None in a start)

    def to_record(self) -> dict:
        """The JSON-lines record of the output contract (a start record has no "end", "peak")."""
        record = asdict(self)
        if self.type == "start":
            del record["end"], record["peak"]
        return record


@dataclass(eq=False)  # compared and hashed by identity
class _Track:
    label_id: int
    start: float
    end: float
    score: float  # score of the latest matching candidate (the best informed)
    furthest: float  # the furthest end that a candidate of it reached
    present: float = -np.inf  # the furthest that raw predictions saying it goes on reached
    goes_on: bool = False  # whether one of the latest window's raw predictions says so
    history: list[tuple[float, float, float]] = field(default_factory=list)  # (now, end, furthest)
    id: int | None = None  # given when the track opens; its start is final from then on
    hits: int = 0  # consecutive windows that matched it
    closed: bool = False
    start_sum: float = 0.0  # score-weighted sum of the starts seen while pending
    start_weight: float = 0.0
    best: float = 0.0  # the highest score of its candidates: an end record's score
    peak: float = 0.0  # where its best-scoring candidate was scored (stream time)

    def __post_init__(self) -> None:
        self.best = max(self.best, self.score)

    @property
    def pending(self) -> bool:
        return self.id is None

    @property
    def span(self) -> tuple[float, float]:
        return self.start, self.end

    @property
    def reach(self) -> tuple[float, float]:
        """Its span up to where raw predictions last said it went on."""
        return self.start, max(self.end, self.present)


@dataclass
class _Candidate:
    start: float
    end: float
    label_id: int
    score: float
    peak: float  # the stream time it was scored at
    start_seen: bool  # False: cut by a full window's left edge or by a closed track
    ongoing: bool  # its end lies within ``close_after`` of now


class Stitcher:
    """Turns the decoded candidates of successive windows into start and end events."""

    def __init__(self, classes: list[str], config: StitchConfig | None = None) -> None:
        self.classes = classes
        self.config = config or StitchConfig()
        self._tracks: list[_Track] = []  # live (pending or open) and recently closed tracks
        self._next_id = 0

    def update(
        self,
        found: Segments,
        window_start: float,
        now: float,
        full: bool,
        emitted_at: float,
        ongoing: Segments | None = None,
    ) -> list[Event]:
        """Stitch one window's candidates (in stream seconds, within [window_start, now]).

        ``full``: the window does not begin at the stream's start. ``ongoing``: the window's raw
        predictions that reach "now" (`ongoing_predictions`), None where unknown. Returns the
        records it emits.
        """
        candidates = self._candidates(found, window_start, now, full)
        for track in self._tracks:
            if not track.closed:
                self._follow_present(track, ongoing, window_start, now)
        matched = self._match(candidates, window_start, now)
        config = self.config
        events: list[Event] = []
        for track in sorted(self._tracks, key=lambda t: t.start):
            if track.closed:
                continue
            self._follow_reach(track, found, window_start, now)
            if track.pending:
                if track not in matched or now - track.end >= config.stale_after:
                    track.hits = 0  # missed, or long over: dropped
                elif track.hits >= config.confirm_windows and track.score >= config.threshold:
                    events.append(self._open(track, emitted_at))
                continue
            behind = now - track.end
            if track in matched:
                done = behind >= config.close_after and self._ended(track, now, ongoing)
            else:
                done = now - track.reach[1] >= config.silence
            if done:
                events.append(self._close(track, emitted_at))
        # drop missed pending tracks; keep closed ones while windows see them (they cut repeats)
        self._tracks = [
            t
            for t in self._tracks
            if (t.closed and t.end > window_start) or (not t.closed and (t.hits or not t.pending))
        ]
        return events

    def flush(self, emitted_at: float) -> list[Event]:
        """End of stream: close open tracks, emit pending ones that reach the threshold."""
        events: list[Event] = []
        for track in sorted(self._tracks, key=lambda t: t.start):
            if track.closed:
                continue
            if track.pending:
                if track.hits == 0 or track.score < self.config.threshold:
                    continue
                events.append(self._open(track, emitted_at))
            events.append(self._close(track, emitted_at))
        self._tracks = []
        return events

    def _candidates(
        self, found: Segments, window_start: float, now: float, full: bool
    ) -> list[_Candidate]:
        """The window's candidates that may play a part, best first, duplicates dropped and the
        stretches of closed tracks cut off (module docstring)."""
        config = self.config
        spans: list[tuple[float, float, int]] = []  # kept candidates as decoded
        kept: list[_Candidate] = []
        for k in np.argsort(-found.score, kind="stable"):
            start, end = float(found.start[k]), float(found.end[k])
            label, score = int(found.label[k]), float(found.score[k])
            if score < config.candidate_floor or end <= start:
                continue
            better = [(s, e) for s, e, c in spans if c == label]
            if _covered(start, end, better) >= config.absorb_overlap * (end - start):
                continue
            spans.append((start, end, label))
            start_seen = not (full and start <= window_start + config.edge_seconds)
            closed_end = max(
                (
                    t.end
                    for t in self._tracks
                    if t.closed
                    and t.label_id == label
                    and t.start < end
                    and start < t.end + config.close_after
                ),
                default=None,
            )
            if closed_end is not None:  # only what goes on after a closed track may be new
                start, start_seen = max(start, closed_end), False
                if end - start < config.close_after:
                    continue
            ongoing = end >= now - config.close_after
            kept.append(
                _Candidate(start, end, label, score, float(found.peak[k]), start_seen, ongoing)
            )
        return kept

    def _match(self, candidates: list[_Candidate], window_start: float, now: float) -> set[_Track]:
        """Match candidates to live tracks (best candidate first); returns the tracks matched."""
        config = self.config
        matched: set[_Track] = set()
        for candidate in candidates:
            live = [t for t in self._tracks if not t.closed and t.label_id == candidate.label_id]
            bounds = np.array([candidate.start]), np.array([candidate.end])
            ious = [float(_window_iou(t.span, *bounds, window_start, now)[0]) for t in live]
            if sum(iou >= config.match_iou for iou in ious) > 1:
                continue  # spans two tracks of its class: a merge of neighbours
            best = max(range(len(live)), key=ious.__getitem__, default=None)
            if best is not None and ious[best] >= config.match_iou:
                if live[best] not in matched:
                    matched.add(live[best])
                    self._refine(live[best], candidate, now)
            elif any(abs(candidate.start - t.end) <= config.edge_seconds for t in live):
                continue  # begins where a track of its class ends: that track going on
            elif not any(ious) and self._may_start(candidate):
                start, end = candidate.start, candidate.end
                track = _Track(
                    candidate.label_id, start, end, candidate.score, end, peak=candidate.peak
                )
                self._refine(track, candidate, now)
                self._tracks.append(track)
                matched.add(track)
        return matched

    def _may_start(self, candidate: _Candidate) -> bool:
        """Whether a candidate that overlaps no live track starts one: it reaches the threshold,
        and its start is seen or it goes on now (what is left of an event at a full window's left
        edge, seen only as it leaves the window, starts nothing)."""
        seen_enough = candidate.start_seen or candidate.ongoing
        return candidate.score >= self.config.threshold and seen_enough

    def _refine(self, track: _Track, candidate: _Candidate, now: float) -> None:
        """Update a track with its candidate of this window (module docstring, Start and End)."""
        track.score = candidate.score
        if candidate.score > track.best:
            track.best, track.peak = candidate.score, candidate.peak
        earlier, later = self._neighbours(track)
        if track.pending:
            track.hits += 1
            if candidate.start_seen:
                track.start_sum += candidate.score * candidate.start
                track.start_weight += candidate.score
                track.start = max(track.start_sum / track.start_weight, earlier)
        end = candidate.end
        if self._is_long(track):  # soft-NMS may keep an early-ending version of it: see present
            end = max(end, track.present)
        track.end = max(min(end, later), track.start)
        track.furthest = max(track.furthest, min(candidate.end, later))  # its own end counts

    def _follow_reach(
        self, track: _Track, found: Segments, window_start: float, now: float
    ) -> None:
        """Note how far this window's candidates of the track reach: those that overlap it
        enough (tIoU ``match_iou`` inside the window; soft-NMS alternatives included), and neither
        another live track of its class nor the start of a later one (merges of neighbours)."""
        config = self.config
        ours = (found.label == track.label_id) & (found.score >= config.candidate_floor)
        starts, ends = found.start[ours], found.end[ours]
        overlapping = [
            _window_iou(other.span, starts, ends, window_start, now) >= config.match_iou
            for other in self._tracks
            if other.label_id == track.label_id and not other.closed
        ]
        mine = _window_iou(track.span, starts, ends, window_start, now) >= config.match_iou
        alone = np.sum(overlapping, axis=0) == 1 if overlapping else mine
        _, later = self._neighbours(track, pending=True)
        reaching = ends[mine & alone & (ends <= later)]
        if len(reaching):
            track.furthest = max(track.furthest, float(reaching.max()))
        track.history.append((now, track.end, track.furthest))

    def _stood_still(self, track: _Track, now: float) -> bool:
        """Whether, over the last ``settle`` seconds, neither the track's end nor the furthest end
        its candidates reach moved forward by ``end_tolerance`` (``history`` keeps what that
        needs: one soft-NMS alternative that reached far once does not hide the end moving on)."""
        since = now - self.config.settle
        while len(track.history) > 1 and track.history[1][0] <= since:
            del track.history[0]
        then, end_then, furthest_then = track.history[0]
        tolerance = self.config.end_tolerance
        moved = track.end - end_then >= tolerance or track.furthest - furthest_then >= tolerance
        return then <= since and not moved

    def _follow_present(
        self, track: _Track, ongoing: Segments | None, window_start: float, now: float
    ) -> None:
        """Whether the window's raw predictions that reach "now" say that the track goes on, and
        how far they reach: one of its class and ``present_score`` that overlaps it (up to its
        ``present``) and no other live track of its class more (tIoU inside the window)."""
        track.goes_on = False
        if ongoing is None:
            return
        ours = (ongoing.label == track.label_id) & (ongoing.score >= self.config.present_score)
        starts, ends = ongoing.start[ours], ongoing.end[ours]
        mine = _window_iou(track.reach, starts, ends, window_start, now)  # > 0: they overlap
        theirs = [
            _window_iou(other.reach, starts, ends, window_start, now)
            for other in self._tracks
            if other.label_id == track.label_id and not other.closed and other is not track
        ]
        best_elsewhere = np.max(theirs, axis=0) if theirs else np.zeros(len(ends))
        goes_on = (mine > 0) & (mine >= best_elsewhere)
        if goes_on.any():
            track.goes_on = True
            track.present = max(track.present, float(ends[goes_on].max()))

    def _is_long(self, track: _Track) -> bool:
        """Whether the track went on for ``long_event`` seconds (by its reach)."""
        start, end = track.reach
        return end - start >= self.config.long_event

    def _ended(self, track: _Track, now: float, ongoing: Segments | None) -> bool:
        """Whether a matched track whose end lies ``close_after`` behind is over: a short one once
        none of the raw predictions says that it goes on, a ``long_event`` one (and any without
        raw predictions, ``ongoing`` None) once its end stood still."""
        if ongoing is None or self._is_long(track):
            return self._stood_still(track, now)
        return not track.goes_on

    def _neighbours(self, track: _Track, pending: bool = False) -> tuple[float, float]:
        """The latest end of the tracks of its class before ``track`` and the earliest start of
        the confirmed ones after it (``pending``: of any after it): its bounds, so that events of
        one class never overlap (a weak pending track does not cut a confirmed event short)."""
        others = [t for t in self._tracks if t.label_id == track.label_id and t is not track]
        earlier = max((t.end for t in others if t.start < track.start), default=-np.inf)
        later = min(
            (t.start for t in others if t.start > track.start and (pending or not t.pending)),
            default=np.inf,
        )
        return earlier, later

    def _open(self, track: _Track, emitted_at: float) -> Event:
        earlier, _ = self._neighbours(track)  # the record's start never lies in an earlier event
        track.start = max(track.start, earlier)
        track.end = max(track.end, track.start)
        track.id = self._next_id
        self._next_id += 1
        return self._event(track, "start", None, emitted_at)

    def _close(self, track: _Track, emitted_at: float) -> Event:
        _, later = self._neighbours(track)  # nor its end in a later confirmed one
        end = min(track.end, later)
        if self._is_long(track):  # raw predictions linger after the end: what candidates reached
            end = min(end, track.furthest)
        track.end = max(end, track.start)
        track.closed = True
        return self._event(track, "end", track.end, emitted_at)

    def _event(self, track: _Track, kind: str, end: float | None, emitted_at: float) -> Event:
        return Event(
            type=kind,
            id=track.id if track.id is not None else -1,
            label=self.classes[track.label_id],
            label_id=track.label_id,
            start=round(track.start, 3),
            end=None if end is None else round(end, 3),
            score=round(track.best if kind == "end" else track.score, 4),
            emitted_at=round(emitted_at, 3),
            peak=None if end is None else round(min(max(track.peak, track.start), end), 3),
        )


def _covered(start: float, end: float, spans: list[tuple[float, float]]) -> float:
    """Seconds of [start, end] inside the union of ``spans``."""
    edges = sorted((max(s, start), min(e, end)) for s, e in spans if e > start and s < end)
    covered, reach = 0.0, start
    for s, e in edges:
        covered += max(0.0, e - max(s, reach))
        reach = max(reach, e)
    return covered


def _window_iou(
    span: tuple[float, float], starts: np.ndarray, ends: np.ndarray, window_start: float, now: float
) -> np.ndarray:
    """tIoU of candidates (K,) and the part of ``span`` (start, end) inside the window, (K,)."""
    start, end = max(span[0], window_start), min(span[1], now)
    if end <= start:
        return np.zeros(len(starts))
    return temporal_iou(start, end, starts, ends)
