"""Evidence per event: a clip with its sound around the event, and a snapshot from it.

    items ──► a MediaRing per stream (the last ``pre`` + RING_SLACK_SECONDS seconds)
    start ──► a clip begins at start - pre; it joins the stream's running `Recording` if that
              still holds the items from its begin on, else a new recording begins there with
              the ring's items; each recording gets the stream's new items while a clip of it
              takes them
    end   ──► the record names the files to come (``snapshot``, ``clip``: paths relative to the
              folder, ``STREAM/STREAM-RUN-ID.jpg|mp4``); the clip goes on to end + post
    done  ──► the clip is closed, its snapshot taken, and an ``update`` record (the end record
              with the files written, at the stream time the clip was done) is queued for
              `take_updates`

Overlapping clips share a recording, so a second of the stream is encoded once however many
events hold it. The snapshot is the clip's frame (of the stills it keeps) nearest the end
record's ``peak``, the moment the model scored the event highest. Encoding runs on one worker
thread; the stream's thread only copies items into the ring and hands them to the recordings
in batches of BATCH_ITEMS (one queue entry and lock a batch, not an item; at most
MAX_QUEUED_ITEMS waiting: beyond that they are left out of clips and counted). A failure (a
full disk, a folder that went away) is counted, warned about once per kind, and never stops the
stream. `Retention` keeps the folder within ``max_mb``.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import (
    EVIDENCE_CPU_PERCENT,
    EVIDENCE_MAX_MB,
    EVIDENCE_POST_SECONDS,
    EVIDENCE_PRE_SECONDS,
    EVIDENCE_WIDTH,
)
from ..sources.base import AudioBlock, Item
from .base import Sink, SinkError, log
from .clip import MAX_SECONDS, ClipFile
from .cpu_budget import CpuBudget
from .media_ring import MediaRing
from .recording import AUDIO_TAIL_SECONDS, HOLD_SECONDS, JOIN_WINDOW_SECONDS, Recording
from .retention import Retention

RING_SLACK_SECONDS = 15.0  # the ring holds pre + this: how late a start record may come
RING_MAX_BYTES = 256 * 2**20  # per stream
MAX_QUEUED_ITEMS = 4096  # items waiting for the encoder, all recordings together
BATCH_ITEMS = 32  # items handed to the encoder at once (about 0.5 s of a 16-fps, 16-kHz source)
FINISH_TIMEOUT_S = 120.0  # the end of a stream waits this long at most for the encoder
MIN_WIDTH = 32  # px: the narrowest clips


@dataclass(eq=False)  # compared and hashed by identity
class _Feed:
    """The items of one stream on their way to one `Recording` (the encoder thread's)."""

    stream: str
    begin: float  # stream time of the recording's first moment
    clips: list[_Clip] = field(default_factory=list)  # the clips that joined it
    newest: float = -math.inf  # stream time of the newest item queued for it
    batch: list[Item] = field(default_factory=list)  # items not yet handed to the encoder

    @property
    def reach(self) -> float:
        """Stream time up to which its clips take items (inf while an end is unknown)."""
        return max(clip.until for clip in self.clips)

    def lingers(self, t: float) -> bool:
        """Whether a clip may still join at stream time ``t``: its recording passes over items
        no clip wants only HOLD_SECONDS after them, so until then it has every item from its
        clips' reach on."""
        return t <= self.reach + HOLD_SECONDS


@dataclass(eq=False)
class _Clip:
    stream: str
    id: int
    begin: float  # stream time of the clip's first moment
    names: dict[str, str]  # {"snapshot": ..., "clip": ...}, relative to the folder
    feed: _Feed
    end_record: dict | None = None
    until: float = math.inf  # end + post, once the end record came
    taking: bool = True  # still taking the stream's new items
    done_at: float = 0.0  # stream time at which it was done

    @property
    def through(self) -> float:
        """Stream time its recording needs items up to: its end, and the sound that pushes its
        last audio through the encoder."""
        return self.until + AUDIO_TAIL_SECONDS


@dataclass
class _Counts:
    clips: int = 0  # clips written
    snapshots: int = 0  # snapshots written
    failures: int = 0  # files that could not be written
    dropped_items: int = 0  # frames and audio blocks left out of clips (the encoder fell behind)
    encoder_cpu_s: float = 0.0  # CPU time of the encoder thread so far
    frames_encoded: int = 0  # frames encoded, once however many clips hold them
    frames_skipped: int = 0  # frames left out of clips: the encoder had spent its CPU share
    last_error: str | None = None
    warned: set[str] = field(default_factory=set)  # kinds of failure warned about


class EvidenceRecorder(Sink):
    """Keeps a JPEG snapshot and an mp4 clip (H.264 + AAC) of every final event under ``folder``,
    from ``pre`` seconds before its start to ``post`` seconds after its end, at most ``fps``
    frames a second (None: the source's rate) and ``width`` pixels wide (wider frames scaled
    down; snapshots as wide as the ring keeps, 640 px at most), the folder bounded to ``max_mb``
    megabytes (oldest files deleted first). The encoder spends at most ``cpu_percent`` % of the
    CPU time the rest of the process spends (None: no bound); over it, clips keep fewer frames
    (2 a second at least) and all their sound."""

    name = "evidence"

    def __init__(
        self,
        folder: str | Path,
        pre: float = EVIDENCE_PRE_SECONDS,
        post: float = EVIDENCE_POST_SECONDS,
        max_mb: float = EVIDENCE_MAX_MB,
        fps: float | None = None,
        width: int = EVIDENCE_WIDTH,
        cpu_percent: float | None = EVIDENCE_CPU_PERCENT,
    ) -> None:
        for what, value in (("pre", pre), ("post", post)):
            if not (math.isfinite(value) and 0 <= value <= RING_SLACK_SECONDS):
                raise ValueError(
                    f"{what} (--{what}) must be seconds from 0 to {RING_SLACK_SECONDS:g}, "
                    f"got {value}"
                )
        if not (math.isfinite(max_mb) and max_mb > 0):
            raise ValueError(
                "max_mb (--evidence-max-mb), the evidence folder's bound, must be megabytes "
                f"above 0, got {max_mb}"
            )
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(
                f"fps (--evidence-fps), the clips' frame-rate cap, must be above 0, got {fps}"
            )
        if not (isinstance(width, int) and MIN_WIDTH <= width):
            raise ValueError(
                f"width (--evidence-width), the clips' largest width, must be a whole number of "
                f"pixels from {MIN_WIDTH}, got {width}"
            )
        if cpu_percent is not None and not (math.isfinite(cpu_percent) and cpu_percent > 0):
            raise ValueError(
                "cpu_percent (--evidence-cpu), the encoder's share of the CPU, must be a percent "
                f"above 0 (or none: no bound), got {cpu_percent}"
            )
        self.folder = Path(folder)
        self.pre, self.post, self.max_mb, self.fps = pre, post, max_mb, fps
        self.width, self.cpu_percent = width, cpu_percent
        self._run = time.strftime("%Y%m%dT%H%M%S", time.gmtime())  # tells runs' files apart
        self._rings: dict[str, MediaRing] = {}
        self._clips: dict[tuple[str, int], _Clip] = {}  # clips not yet done, by (stream, id)
        self._feeds: dict[str, list[_Feed]] = {}  # feeds taking each stream's items
        self._work: queue.SimpleQueue = queue.SimpleQueue()  # (command, clip or feed, payload)
        self._queued = 0  # items waiting in _work
        self._updates: list[tuple[str, dict]] = []
        self._counts = _Counts()
        self._lock = threading.Lock()
        self._retention: Retention | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            self._retention = Retention(self.folder, int(self.max_mb * 2**20))
        except OSError as error:
            raise SinkError(
                f"the evidence folder '{self.folder}' cannot be written "
                f"({error.strerror or error}): give a folder you can write"
            ) from None
        self._thread = threading.Thread(target=self._encode, name="loco-evidence", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Items waiting for the encoder (beyond MAX_QUEUED_ITEMS they are left out of clips)."""
        with self._lock:
            return self._queued

    def on_item(self, stream: str, item: Item) -> None:
        """Keep a copy of one item of ``stream``, and hand it to the recordings taking it (a
        feed whose clips all stopped taking items lingers, then closes)."""
        with self._lock:
            if stream not in self._rings:
                self._rings[stream] = MediaRing(self.pre + RING_SLACK_SECONDS, RING_MAX_BYTES)
            kept = self._rings[stream].add(item)
            reached = kept.t + kept.duration if isinstance(kept, AudioBlock) else kept.t
            for feed in list(self._feeds.get(stream, ())):
                for clip in feed.clips:
                    if clip.taking and (
                        reached > clip.through or kept.t - clip.begin > MAX_SECONDS
                    ):
                        self._stop_taking(clip, reached)
                if any(clip.taking for clip in feed.clips) or feed.lingers(kept.t):
                    self._queue_item(feed, kept)
                else:
                    self._close(feed)

    def annotate(self, stream: str, record: dict) -> dict:
        """Begin a clip on a start record; name the files in an end record (returned anew)."""
        if record.get("type") not in ("start", "end"):
            return record
        with self._lock:
            clip = self._clips.get((stream, record["id"])) or self._begin(stream, record)
            if record["type"] == "start":
                return record
            clip.end_record = record
            clip.until = record["end"] + self.post
            self._work.put(("end", clip, clip.until))
            newest = self._rings[stream].newest if stream in self._rings else None
            if not clip.taking or newest is None or newest > clip.through:
                self._stop_taking(clip, record["emitted_at"] if newest is None else newest)
            return {**record, **clip.names}

    def take_updates(self) -> list[tuple[str, dict]]:
        """The ``update`` records of the clips done since the last call, as (stream, record)."""
        with self._lock:
            updates, self._updates = self._updates, []
        return updates

    def finish(self, stream: str | None = None) -> None:
        """``stream`` (None: every stream) ended: its clips are closed with what they have;
        waits for the encoder."""
        with self._lock:
            for clip in list(self._clips.values()):
                if stream is not None and clip.stream != stream:
                    continue
                newest = self._rings[clip.stream].newest if clip.stream in self._rings else None
                self._stop_taking(clip, newest or 0.0)
            for name, feeds in self._feeds.items():
                if stream is None or name == stream:
                    for feed in list(feeds):
                        self._close(feed)
        if self._thread is not None and self._thread.is_alive():
            done = threading.Event()
            self._work.put(("sync", None, done))
            if not done.wait(FINISH_TIMEOUT_S):
                log.warning("evidence: the encoder did not finish the last clips in time")

    def counters(self) -> dict:
        with self._lock:
            counts = self._counts
            found = {
                "clips": counts.clips,
                "snapshots": counts.snapshots,
                "failures": counts.failures,
                "dropped_items": counts.dropped_items,
                "encoder_cpu_s": round(counts.encoder_cpu_s, 3),
                "frames_encoded": counts.frames_encoded,
                "frames_skipped": counts.frames_skipped,
            }
            if self._retention is not None:
                found["deleted"] = self._retention.deleted
                found["bytes"] = self._retention.total
            if counts.last_error is not None:
                found["last_error"] = counts.last_error
            return found

    def close(self) -> None:
        if self._thread is None:
            return
        self.finish()
        self._work.put(("stop", None, None))
        self._thread.join(timeout=FINISH_TIMEOUT_S)
        self._thread = None

    # -- the stream's side (the lock is held) --------------------------------------------------

    def _begin(self, stream: str, record: dict) -> _Clip:
        begin = max(0.0, record["start"] - self.pre)
        stem = f"{stream}-{self._run}-{record['id']}"
        names = {"snapshot": f"{stream}/{stem}.jpg", "clip": f"{stream}/{stem}.mp4"}
        feed = self._joinable(stream, begin)
        fresh = feed is None
        if fresh:
            feed = _Feed(stream, begin)
            self._feeds.setdefault(stream, []).append(feed)
            self._work.put(("open", feed, None))
        clip = _Clip(stream, record["id"], begin, names, feed)
        self._clips[(stream, clip.id)] = clip
        feed.clips.append(clip)
        self._work.put(("join", clip, None))  # before any item it wants is encoded
        if fresh:
            ring = self._rings.get(stream)
            for item in ring.since(begin) if ring is not None else []:
                self._queue_item(feed, item)
            self._hand_over(feed)
        return clip

    def _joinable(self, stream: str, begin: float) -> _Feed | None:
        """A feed whose clips reach ``begin`` and whose recording has every item from there on,
        encoded (with a keyframe before it) or still held (see `_Feed.lingers`)."""
        for feed in self._feeds.get(stream, ()):
            if feed.begin <= begin <= feed.reach and begin >= feed.newest - JOIN_WINDOW_SECONDS:
                return feed
        return None

    def _queue_item(self, feed: _Feed, item: Item) -> None:
        if self._queued >= MAX_QUEUED_ITEMS:
            self._counts.dropped_items += 1
            return
        self._queued += 1
        feed.batch.append(item)
        feed.newest = max(feed.newest, item.t)
        if len(feed.batch) >= BATCH_ITEMS:
            self._hand_over(feed)

    def _hand_over(self, feed: _Feed) -> None:
        """Queue the feed's batch of items for the encoder."""
        if feed.batch:
            self._work.put(("items", feed, feed.batch))
            feed.batch = []

    def _close(self, feed: _Feed) -> None:
        """No more items for ``feed``: its recording encodes what it holds and its clips end."""
        self._hand_over(feed)
        self._feeds[feed.stream].remove(feed)
        self._work.put(("close", feed, None))

    def _stop_taking(self, clip: _Clip, at: float) -> None:
        """No more items for ``clip``; once its end is known, it is done at stream time ``at``."""
        clip.taking = False
        if clip.end_record is None:
            return  # a long event's clip waits for its end record to be done
        del self._clips[(clip.stream, clip.id)]
        clip.done_at = max(at, clip.end_record["emitted_at"])
        self._hand_over(clip.feed)  # every item up to its end, before it is done
        self._work.put(("done", clip, None))

    # -- the encoder thread --------------------------------------------------------------------

    def _encode(self) -> None:
        recordings: dict[_Feed, Recording] = {}
        files: dict[_Clip, ClipFile] = {}
        began = time.thread_time()
        budget = None if self.cpu_percent is None else CpuBudget(self.cpu_percent / 100)
        while True:
            command, target, payload = self._work.get()
            self._counts.encoder_cpu_s = time.thread_time() - began  # a float: no lock needed
            if command == "stop":
                for recording in recordings.values():
                    recording.abort()
                return
            if command == "sync":
                payload.set()
                continue
            if command == "items":
                with self._lock:
                    self._queued -= len(payload)
            feed = target if isinstance(target, _Feed) else target.feed
            if command == "open":
                recordings[feed] = Recording(feed.begin, self.fps, self.width, budget)
            recording = recordings.get(feed)
            if recording is None:
                continue  # its recording failed: its clips are counted already
            frames, skipped = recording.frames, recording.skipped
            try:
                if command == "join":
                    files[target] = ClipFile(self.folder / target.names["clip"], target.begin)
                    recording.join(files[target])
                elif command == "items":
                    for item in payload:
                        recording.add(item)
                elif command == "end" and target in files:
                    files[target].until = payload
                elif command == "done" and target in files:
                    files[target].done = True
                    recording.advance(files[target].until)
                elif command == "close":
                    recording.finish()
            except Exception as error:  # whatever goes wrong with the encoders, the stream goes on
                for clip in [clip for clip in files if clip.feed is feed]:
                    del files[clip]
                    self._failed(clip, error)
                recording.abort()
                del recordings[feed]
                continue
            self._counts.frames_encoded += recording.frames - frames  # this thread's alone
            self._counts.frames_skipped += recording.skipped - skipped
            self._settle(feed, recording, files)
            if recording.finished and not recording.clips:
                del recordings[feed]

    def _settle(self, feed: _Feed, recording: Recording, files: dict[_Clip, ClipFile]) -> None:
        """Complete the recording's clips it is through with; count those it dropped."""
        ready = recording.through()  # may drop a clip it cannot write: before the failures
        if not ready and not recording.failed:
            return  # the usual case: nothing to look up
        owners = {file: clip for clip, file in files.items() if clip.feed is feed}
        for file, error in recording.failed:
            del files[owners[file]]
            self._failed(owners[file], error)
        recording.failed.clear()
        for file in ready:
            del files[owners[file]]
            self._complete(owners[file], file, recording.newest)

    def _complete(self, clip: _Clip, file: ClipFile, reached: float) -> None:
        """Close the clip, take its snapshot, queue the update record (emitted at the stream
        time ``reached``, that of the newest item its recording had taken)."""
        written: dict[str, str] = {}
        try:
            file.close()
        except Exception as error:
            file.abort()
            self._failed(clip, error)
            return
        written["clip"] = clip.names["clip"]
        self._retention.add(file.path)
        with self._lock:
            self._counts.clips += 1
        record = clip.end_record
        snapshot = self.folder / clip.names["snapshot"]
        try:
            file.write_snapshot(record["peak"], snapshot)
        except Exception as error:
            self._failed(clip, error)
        else:
            written["snapshot"] = clip.names["snapshot"]
            self._retention.add(snapshot)
            with self._lock:
                self._counts.snapshots += 1
        emitted = max(clip.done_at, reached)
        update = {**record, "type": "update", **written, "emitted_at": round(emitted, 3)}
        with self._lock:
            self._updates.append((clip.stream, update))

    def _failed(self, clip: _Clip, error: Exception) -> None:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        with self._lock:
            counts = self._counts
            counts.failures += 1
            counts.last_error = f"event {clip.id} of {clip.stream}: {reason}"
            first = reason not in counts.warned
            counts.warned.add(reason)
        if first:
            log.warning(
                f"evidence: the files of event {clip.id} ({clip.stream}) could not be written "
                f"under '{self.folder}' ({reason}); detection goes on, failures are counted in "
                "the stats (sinks.evidence)"
            )
