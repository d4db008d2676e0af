"""Where loco-stream's records go: the JSON-lines files (one per stream and one merged), the
terminal, and the monitoring sinks the options ask for (``loco_stream.sinks``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loco_stream.sinks import (
    EvidenceRecorder,
    LivePage,
    Monitor,
    MqttSink,
    Sink,
    SinkError,
    WebhookSink,
)
from loco_stream.stream.lane import StreamEvent, StreamReport
from loco_stream.stream.output import JsonlWriter, OutputFailed, OutputInUse, event_line

from .stream_errors import PROG, CliError


def build_sinks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Sink]:
    """The sinks the monitoring options ask for (none opened yet); argparse's error if unusable."""
    sinks: list[Sink] = []
    try:
        if args.evidence is not None:
            options = {
                "pre": args.pre,
                "post": args.post,
                "max_mb": args.evidence_max_mb,
                "fps": args.evidence_fps,
                "width": args.evidence_width,
            }
            given = {name: value for name, value in options.items() if value is not None}
            if args.evidence_cpu is not None:
                given["cpu_percent"] = _cpu_percent(args.evidence_cpu)
            sinks.append(EvidenceRecorder(args.evidence, **given))
        if args.mqtt is not None:
            sinks.append(MqttSink(args.mqtt, args.mqtt_prefix or "loco", args.mqtt_tls))
        if args.webhook is not None:
            sinks.append(WebhookSink(args.webhook))
        if args.serve is not None:
            sinks.append(LivePage(args.serve, args.serve_remote, args.evidence))
    except ValueError as error:
        parser.error(str(error))
    return sinks


def _cpu_percent(text: str) -> float | None:
    """``--evidence-cpu``'s value: a percent, or None for "none" (no bound)."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"--evidence-cpu takes a percent above 0 (or none: no bound), got '{text}'"
        ) from None


def open_monitor(monitor: Monitor) -> None:
    """Open the sinks (a `CliError` naming the one that cannot start) and say where the page is."""
    try:
        monitor.open()
    except SinkError as error:
        raise CliError(str(error)) from None
    for sink in monitor.sinks:
        if isinstance(sink, LivePage):
            print(f"live page: {sink.url}", flush=True)


class Output:
    """A JSON-lines file whose write failure (a full disk) is said once, as an error line, and
    stops only that file: detection and the other outputs go on, and the run exits 1."""

    def __init__(self, writer: JsonlWriter) -> None:
        self.writer = writer
        self.failed = False

    def write(self, record: dict) -> None:
        if self.failed:
            return
        try:
            self.writer.write(record)
        except OutputFailed as error:
            self.failed = True
            print(f"{PROG}: error: {error}; detection goes on", file=sys.stderr, flush=True)


class ManyStreamOutputs:
    """Where the events of many streams go: DIR/NAME.jsonl per stream, one merged file, and the
    terminal (each line prefixed with the stream's name)."""

    def __init__(
        self, output: Path | None, output_dir: Path | None, names: list[str], monitor: Monitor
    ) -> None:
        self.monitor = monitor
        monitor.write = lambda record: self.write(record["stream"], record)
        self.merged: Output | None = None
        self.per_stream: dict[str, Output] = {}
        self.failed = False  # an output file could not be written to its end
        try:
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                for name in names:
                    self.per_stream[name] = Output(JsonlWriter(output_dir / f"{name}.jsonl"))
            if output is not None:
                self.merged = Output(JsonlWriter(output))
        except OutputInUse as error:
            self.close()
            raise CliError(f"cannot write {error}") from None
        except OSError as error:
            self.close()
            where = error.filename or output_dir or output
            raise CliError(f"cannot write '{where}': {error.strerror}") from None

    def write(self, name: str, record: dict) -> None:
        if name in self.per_stream:
            self.per_stream[name].write(record)
        if self.merged is not None:
            self.merged.write(record)

    def on_event(self, item: StreamEvent) -> None:
        self.monitor.on_record(item.to_record())
        print(f"[{item.stream}] {event_line(item.event)}", flush=True)

    def on_end(self, report: StreamReport) -> None:
        self.monitor.finish(report.name)  # its clips' updates come before its stats
        if report.stats.steps or report.stats.frames or report.stats.audio_seconds:
            record = report.to_record(report.stats.media_seconds)
            self.monitor.on_record(self.monitor.with_counters(record))
            lag = "" if report.max_lag is None else f", max lag {report.max_lag:.2f} s"
            print(f"[{report.name}] {report.stats.line()}{lag}", flush=True)
        if report.error is not None:
            print(f"{PROG}: error: stream '{report.name}': {report.error}", file=sys.stderr)
        if report.name in self.per_stream:
            output = self.per_stream.pop(report.name)
            self.failed |= output.failed
            output.writer.close()
            if not report.opened:  # no file for a stream whose source never opened
                output.writer.path.unlink(missing_ok=True)

    def close(self) -> None:
        outputs = [*self.per_stream.values(), *([self.merged] if self.merged else [])]
        for output in outputs:
            self.failed |= output.failed
            output.writer.close()
        self.per_stream.clear()
        self.merged = None
