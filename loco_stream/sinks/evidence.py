"""Evidence per event: a clip with its sound around the event, and a snapshot from it.

    items ──► a MediaRing per stream (the last ``pre`` + RING_SLACK_SECONDS seconds)
    start ──► a clip begins at start - pre: the ring's items from then on, then each new item
    end   ──► the record names the files to come (``snapshot``, ``clip``: paths relative to the
              folder, ``STREAM/STREAM-RUN-ID.jpg|mp4``); the clip goes on to end + post
    done  ──► the clip is closed, its snapshot taken, and an ``update`` record (the end record
              with the files written, at the stream time the clip was done) is queued for
              `take_updates`

The snapshot is the clip's frame (of the stills its writer keeps) nearest the end record's
``peak``, the moment the model scored the event highest. Encoding runs on one
worker thread; the stream's thread only copies items into the ring and hands them to the clips'
encoder in batches of BATCH_ITEMS (one queue entry and lock a batch, not an item; at most
MAX_QUEUED_ITEMS waiting: beyond that they are left out of clips and counted). A failure
(a full disk, a folder that went away) is counted, warned about once per kind, and never stops
the stream. `Retention` keeps the folder within ``max_mb``.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import EVIDENCE_MAX_MB, EVIDENCE_POST_SECONDS, EVIDENCE_PRE_SECONDS
from ..sources.base import AudioBlock, Item
from .base import Sink, SinkError, log
from .clip import ClipWriter
from .media_ring import MediaRing
from .retention import Retention

RING_SLACK_SECONDS = 15.0  # the ring holds pre + this: how late a start record may come
RING_MAX_BYTES = 256 * 2**20  # per stream
MAX_CLIP_SECONDS = 600.0  # a clip takes no items beyond this (a very long event)
MAX_QUEUED_ITEMS = 4096  # items waiting for the encoder, all clips together
BATCH_ITEMS = 32  # items handed to the encoder at once (about 0.5 s of a 16-fps, 16-kHz source)
FINISH_TIMEOUT_S = 120.0  # the end of a stream waits this long at most for the encoder


@dataclass(eq=False)  # compared and hashed by identity
class _Clip:
    stream: str
    id: int
    begin: float  # stream time of the clip's first moment
    names: dict[str, str]  # {"snapshot": ..., "clip": ...}, relative to the folder
    end_record: dict | None = None
    until: float = math.inf  # end + post, once the end record came
    taking: bool = True  # still taking the stream's new items
    done_at: float = 0.0  # stream time at which it was done
    batch: list[Item] = field(default_factory=list)  # items not yet handed to the encoder


@dataclass
class _Counts:
    clips: int = 0  # clips written
    snapshots: int = 0  # snapshots written
    failures: int = 0  # files that could not be written
    dropped_items: int = 0  # frames and audio blocks left out of clips (the encoder fell behind)
    encoder_cpu_s: float = 0.0  # CPU time of the encoder thread so far
    last_error: str | None = None
    warned: set[str] = field(default_factory=set)  # kinds of failure warned about


class EvidenceRecorder(Sink):
    """Keeps a JPEG snapshot and an mp4 clip (H.264 + AAC) of every final event under ``folder``,
    from ``pre`` seconds before its start to ``post`` seconds after its end, at most ``fps``
    frames a second (None: the source's rate), the folder bounded to ``max_mb`` megabytes (oldest
    files deleted first)."""

    name = "evidence"

    def __init__(
        self,
        folder: str | Path,
        pre: float = EVIDENCE_PRE_SECONDS,
        post: float = EVIDENCE_POST_SECONDS,
        max_mb: float = EVIDENCE_MAX_MB,
        fps: float | None = None,
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
        self.folder = Path(folder)
        self.pre, self.post, self.max_mb, self.fps = pre, post, max_mb, fps
        self._run = time.strftime("%Y%m%dT%H%M%S", time.gmtime())  # tells runs' files apart
        self._rings: dict[str, MediaRing] = {}
        self._clips: dict[tuple[str, int], _Clip] = {}  # clips not yet done, by (stream, id)
        self._taking: dict[str, list[_Clip]] = {}  # clips taking each stream's items
        self._work: queue.SimpleQueue = queue.SimpleQueue()  # (command, clip, payload)
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

    def on_item(self, stream: str, item: Item) -> None:
        """Keep a copy of one item of ``stream``, and hand it to the clips taking it."""
        with self._lock:
            if stream not in self._rings:
                self._rings[stream] = MediaRing(self.pre + RING_SLACK_SECONDS, RING_MAX_BYTES)
            kept = self._rings[stream].add(item)
            reached = kept.t + kept.duration if isinstance(kept, AudioBlock) else kept.t
            for clip in list(self._taking.get(stream, ())):
                if reached > clip.until or kept.t - clip.begin > MAX_CLIP_SECONDS:
                    self._stop_taking(clip, reached)
                else:
                    self._queue_item(clip, kept)

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
            newest = self._rings[stream].newest if stream in self._rings else None
            if not clip.taking or newest is None or newest > clip.until:
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
        clip = _Clip(stream, record["id"], begin, names)
        self._clips[(stream, clip.id)] = clip
        self._taking.setdefault(stream, []).append(clip)
        self._work.put(("begin", clip, None))
        ring = self._rings.get(stream)
        for item in ring.since(begin) if ring is not None else []:
            self._queue_item(clip, item)
        self._hand_over(clip)
        return clip

    def _queue_item(self, clip: _Clip, item: Item) -> None:
        if self._queued >= MAX_QUEUED_ITEMS:
            self._counts.dropped_items += 1
            return
        self._queued += 1
        clip.batch.append(item)
        if len(clip.batch) >= BATCH_ITEMS:
            self._hand_over(clip)

    def _hand_over(self, clip: _Clip) -> None:
        """Queue the clip's batch of items for the encoder."""
        if clip.batch:
            self._work.put(("items", clip, clip.batch))
            clip.batch = []

    def _stop_taking(self, clip: _Clip, at: float) -> None:
        """No more items for ``clip``; once its end is known, it is done at stream time ``at``."""
        if clip.taking:
            clip.taking = False
            self._taking[clip.stream].remove(clip)
            self._hand_over(clip)
        if clip.end_record is None:
            return  # a long event's clip waits for its end record to be done
        del self._clips[(clip.stream, clip.id)]
        clip.done_at = max(at, clip.end_record["emitted_at"])
        self._work.put(("done", clip, None))

    # -- the encoder thread --------------------------------------------------------------------

    def _encode(self) -> None:
        writers: dict[_Clip, ClipWriter] = {}
        began = time.thread_time()
        while True:
            command, clip, payload = self._work.get()
            self._counts.encoder_cpu_s = time.thread_time() - began  # a float: no lock needed
            if command == "stop":
                for writer in writers.values():
                    writer.abort()
                return
            if command == "sync":
                payload.set()
                continue
            if command == "items":
                with self._lock:
                    self._queued -= len(payload)
            try:
                if command == "begin":
                    path = self.folder / clip.names["clip"]
                    writers[clip] = ClipWriter(path, clip.begin, self.fps)
                elif command == "items" and clip in writers:
                    for item in payload:
                        writers[clip].add(item, clip.until)
                elif command == "done" and clip in writers:
                    self._complete(clip, writers.pop(clip))
            except Exception as error:  # whatever goes wrong with a file, the stream goes on
                self._failed(clip, error)
                if clip in writers:
                    writers.pop(clip).abort()

    def _complete(self, clip: _Clip, writer: ClipWriter) -> None:
        """Close the clip, take its snapshot, queue the update record."""
        written: dict[str, str] = {}
        try:
            writer.close(clip.until)
        except Exception as error:
            writer.abort()
            self._failed(clip, error)
            return
        written["clip"] = clip.names["clip"]
        self._retention.add(writer.path)
        with self._lock:
            self._counts.clips += 1
        record = clip.end_record
        snapshot = self.folder / clip.names["snapshot"]
        try:
            writer.write_snapshot(max(0.0, record["peak"] - clip.begin), snapshot)
        except Exception as error:
            self._failed(clip, error)
        else:
            written["snapshot"] = clip.names["snapshot"]
            self._retention.add(snapshot)
            with self._lock:
                self._counts.snapshots += 1
        update = {**record, "type": "update", **written, "emitted_at": round(clip.done_at, 3)}
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
