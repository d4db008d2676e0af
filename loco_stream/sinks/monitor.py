"""One stream's (or many streams') records and media, handed to the JSON lines and the sinks.

    record ──► evidence names its files (end) ──► write (the JSON line) ──► each sink's publish
    item   ──► evidence's ring and clips
    pump() ──► the evidence's ``update`` records, written and published like any record

The JSON line is written first and a sink's failure is caught, counted and warned about once:
no sink stops detection or costs a line. Not thread-safe for records (one thread makes them, as
the engines do); ``on_item`` may be called from the sources' threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..sources.base import Item
from .base import Sink, SinkError, log
from .evidence import EvidenceRecorder

DEFAULT_STREAM = "stream"  # the name of a single stream's records (they carry no "stream")


class Monitor:
    """Hands records to ``write`` (the JSON lines; may be set after opening) and then to
    ``sinks``; items to the `EvidenceRecorder` among them. ``stream`` names the records that
    carry no ``"stream"`` (a single stream)."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        write: Callable[[dict], None] | None = None,
        stream: str = DEFAULT_STREAM,
    ) -> None:
        self.sinks = list(sinks)
        self.evidence = next((s for s in self.sinks if isinstance(s, EvidenceRecorder)), None)
        self.write = write
        self._stream = stream
        self._failures: dict[str, int] = {}

    def open(self) -> None:
        """Open every sink; on a `SinkError` the ones opened are closed and it is raised."""
        for index, sink in enumerate(self.sinks):
            try:
                sink.open()
            except SinkError:
                for opened in self.sinks[:index]:
                    opened.close()
                raise

    def on_item(self, item: Item, stream: str | None = None) -> None:
        """A frame or audio block of ``stream`` (None: the single stream), for the evidence."""
        if self.evidence is not None:
            self._guarded(self.evidence, self.evidence.on_item, stream or self._stream, item)

    def on_record(self, record: dict) -> None:
        """Write one record and publish it (an end record names its evidence files first)."""
        stream = record.get("stream", self._stream)
        if self.evidence is not None:
            named = self._guarded(self.evidence, self.evidence.annotate, stream, record)
            record = record if named is None else named
        self._publish(stream, record)
        self.pump()

    def pump(self) -> None:
        """Write and publish the evidence's ``update`` records that are ready."""
        if self.evidence is None:
            return
        for stream, update in self.evidence.take_updates():
            self._publish(stream, update)

    def with_counters(self, record: dict) -> dict:
        """A stats record with the sinks' counters under ``"sinks"`` (unchanged without sinks)."""
        if not self.sinks:
            return record
        counters = {sink.name: sink.counters() for sink in self.sinks}
        for name, count in self._failures.items():
            counters[name]["errors"] = count
        return {**record, "sinks": counters}

    def finish(self, stream: str | None = None) -> None:
        """``stream`` (None: every stream) ended: the evidence closes its clips, and their
        updates are handed out."""
        if self.evidence is not None:
            self._guarded(self.evidence, self.evidence.finish, stream)
            self.pump()

    def summary(self) -> str:
        """One line for the terminal: what each sink did."""
        parts = []
        for name, counters in self.with_counters({})["sinks"].items():
            counts = [f"{value} {key}" for key, value in counters.items() if key != "last_error"]
            parts.append(f"{name} {', '.join(counts)}")
        return "sinks: " + "; ".join(parts)

    def close(self) -> None:
        """Close every sink (each delivers what it can within a few seconds)."""
        for sink in self.sinks:
            self._guarded(sink, sink.close)

    def _publish(self, stream: str, record: dict) -> None:
        if self.write is not None:
            self.write(record)
        for sink in self.sinks:
            if sink is not self.evidence:
                self._guarded(sink, sink.publish, stream, record)

    def _guarded(self, sink: Sink, call: Callable, *args: object) -> object:
        """``call(*args)``; an exception is counted and warned about (once per sink), not raised."""
        try:
            return call(*args)
        except Exception as error:  # a sink never stops detection
            count = self._failures.get(sink.name, 0)
            self._failures[sink.name] = count + 1
            if count == 0:
                log.warning(
                    f"{sink.name}: {type(error).__name__}: {error}; detection goes on without "
                    "what failed (errors are counted in the stats)"
                )
            return None
