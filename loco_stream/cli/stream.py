"""loco-stream: detect audio-visual events online from a camera and a microphone, a file, or a demo.

    loco-stream --camera 0 --mic default --output events.jsonl
    loco-stream --input clip.mp4 [--realtime]
    loco-stream --demo [--seed 7] [--duration 30]
    loco-stream --input A.mp4 --input B.mp4 [--camera 0 --mic default ...] --output-dir DIR
    loco-stream --sources streams.yaml [--output-dir DIR] [--output ALL.jsonl]
    loco-stream ... [--evidence DIR] [--mqtt HOST[:PORT]] [--webhook URL] [--serve [HOST:PORT]]

Each event is printed as it is confirmed (START) and when it is final (END), and written to
``--output`` as JSON lines (docs/output.md). Many streams (more than one ``--input`` or camera,
``--sources``, or ``--output-dir``) run in one process on one batched engine
(``loco_stream.stream.multi``): ``--output-dir`` gets ``NAME.jsonl`` per stream, ``--output`` all
of them merged; each record carries its stream's name. A stream that fails is reported and the
others go on; the exit status is then 1. Ctrl-C or SIGTERM closes the open events, writes them,
prints the stats and exits 0. Argument errors exit 2 (argparse's usage line); startup problems
exit 1 with one ``loco-stream: error:`` line and write nothing. ``--output`` is locked while it
is written: a second writer of the same file is refused; a write that fails (a full disk) is one
error line, leaves whole lines, stops only that file and makes the exit status 1. The
monitoring options hand every record to sinks beside the JSON lines (``loco_stream.sinks``,
docs/monitoring.md); a sink that fails never stops detection or costs a line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import re
import secrets
import signal
import sys
import warnings
from pathlib import Path

import cv2

from loco_stream.limits import LimitError, check, check_positive
from loco_stream.model_dir import ModelDir, ModelDirError
from loco_stream.postprocess import temporal_iou
from loco_stream.runtime import BACKENDS, BackendUnavailable
from loco_stream.sinks import (
    EvidenceRecorder,
    LivePage,
    Monitor,
    MqttSink,
    Sink,
    SinkError,
    WebhookSink,
)
from loco_stream.sinks.live_page import DEFAULT_ADDRESS
from loco_stream.sinks.tap import TappedSpec
from loco_stream.sources import (
    FileSource,
    MediaSource,
    ReopeningSource,
    SourceError,
    list_devices,
)
from loco_stream.sources.base import Item, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.sources.file import input_file_problem
from loco_stream.stream.engine import StreamEngine
from loco_stream.stream.lane import StreamEvent, StreamReport, StreamSpec
from loco_stream.stream.multi import MultiStreamEngine
from loco_stream.stream.output import (
    JsonlWriter,
    OutputFailed,
    OutputInUse,
    Overlay,
    event_line,
    overlay_unavailable,
    print_event,
)
from loco_stream.stream.stitch import DEFAULT_THRESHOLD, Event, StitchConfig
from loco_stream.stream.stream_list import StreamListError, read_stream_list, unique_names
from loco_stream.stream.timeline import StreamStalled

PROG = "loco-stream"
STATS_INTERVAL_S = 10.0  # default period of --stats, in stream seconds
FOUND_IOU = 0.5  # --demo: a true event is found by a final event of its class at this tIoU


class CliError(Exception):
    """A problem to report as one ``loco-stream: error:`` line (exit status 1)."""


class UsageError(CliError):
    """An argument that only the model shows to be wrong: reported as argparse does (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Detect audio-visual events (heard and seen) online with LoCo.",
    )
    source = parser.add_argument_group(
        "sources", "--input, --camera with --mic (each repeatable) and --sources; or --demo"
    )
    source.add_argument(
        "--camera",
        metavar="SPEC",
        action="append",
        default=[],
        help="camera index, device, URL or pipe (repeat with --mic for many)",
    )
    source.add_argument(
        "--mic",
        metavar="DEVICE",
        action="append",
        default=[],
        help="microphone name, index or 'default'",
    )
    source.add_argument(
        "--input",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a video file with audio (repeat for many streams)",
    )
    source.add_argument(
        "--sources", metavar="STREAMS.yaml", type=Path, help="a list of streams (many streams)"
    )
    source.add_argument("--realtime", action="store_true", help="pace --input in real time")
    source.add_argument("--demo", action="store_true", help="a synthetic scenario, live")
    source.add_argument("--seed", type=int, help="--demo scenario seed (default: a fresh one)")
    source.add_argument("--duration", type=float, help="--demo length in seconds")
    source.add_argument("--list-devices", action="store_true", help="list cameras and mics")
    parser.add_argument("--output", metavar="FILE.jsonl", type=Path, help="JSON-lines events")
    parser.add_argument(
        "--output-dir", metavar="DIR", type=Path, help="many streams: DIR/NAME.jsonl per stream"
    )
    parser.add_argument("--model", metavar="DIR", type=Path, help="model dir (default: packaged)")
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        choices=BACKENDS,
        help="runtime of the three graphs (default onnxruntime, on the CPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per graph (2)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"minimum score of emitted events ({DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--hop", type=int, help="steps between windows, 1 to the window (default: the model's)"
    )
    parser.add_argument("--show", action="store_true", help="overlay window (needs a display)")
    parser.add_argument(
        "--stats",
        type=float,
        nargs="?",
        const=STATS_INTERVAL_S,
        metavar="SECONDS",
        help=f"print stats every SECONDS of stream (default {STATS_INTERVAL_S:g})",
    )
    parser.add_argument("--reconnect", action="store_true", help="reopen a live source that stops")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="many streams on a Ray cluster: auto (this machine's, else a private one on "
        '127.0.0.1), local, or an address (pip install "loco-stream[ray]")',
    )
    parser.add_argument("--ray-actors", type=int, metavar="N", help="with --ray: N actors")
    _monitoring_options(parser)
    return parser


def _monitoring_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "monitoring", "evidence files, MQTT, webhooks, a live page (docs/monitoring.md)"
    )
    group.add_argument(
        "--evidence", metavar="DIR", type=Path, help="a snapshot and a clip of each event in DIR"
    )
    group.add_argument("--pre", type=float, metavar="SECONDS", help="clip before an event (2)")
    group.add_argument("--post", type=float, metavar="SECONDS", help="clip after an event (2)")
    group.add_argument(
        "--evidence-max-mb", type=float, metavar="MB", help="bound of DIR, oldest first (1024)"
    )
    group.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish the records to a broker")
    group.add_argument("--mqtt-prefix", metavar="PREFIX", help="topic prefix (loco)")
    group.add_argument("--mqtt-tls", action="store_true", help="TLS to the broker (port 8883)")
    group.add_argument("--webhook", metavar="URL", help="POST each record as JSON to URL")
    group.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"a live page on HOST:PORT (default {DEFAULT_ADDRESS})",
    )
    group.add_argument(
        "--serve-remote", action="store_true", help="allow --serve on a non-loopback address"
    )


def _make_sinks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Sink]:
    """The sinks the monitoring options ask for (none opened yet); argparse's error if unusable."""
    needs = [
        ("--pre", args.pre, "--evidence", args.evidence),
        ("--post", args.post, "--evidence", args.evidence),
        ("--evidence-max-mb", args.evidence_max_mb, "--evidence", args.evidence),
        ("--mqtt-prefix", args.mqtt_prefix, "--mqtt", args.mqtt),
        ("--mqtt-tls", args.mqtt_tls or None, "--mqtt", args.mqtt),
        ("--serve-remote", args.serve_remote or None, "--serve", args.serve),
    ]
    for flag, given, base, base_given in needs:
        if given is not None and base_given is None:
            parser.error(f"{flag} is an option of {base}")
    if args.evidence is not None and args.ray is not None:
        parser.error("--evidence does not go with --ray: the frames stay on the Ray actors")
    sinks: list[Sink] = []
    try:
        if args.evidence is not None:
            options = {"pre": args.pre, "post": args.post, "max_mb": args.evidence_max_mb}
            given = {name: value for name, value in options.items() if value is not None}
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


def _single_name(args: argparse.Namespace) -> str:
    """The name of a single stream in evidence files and MQTT topics."""
    if args.input is not None:
        return re.sub(r"[^A-Za-z0-9._-]", "_", args.input.stem)[:64] or "input"
    return "demo" if args.demo else "camera1"


def _open_monitor(monitor: Monitor) -> None:
    """Open the sinks (a `CliError` naming the one that cannot start) and say where the page is."""
    try:
        monitor.open()
    except SinkError as error:
        raise CliError(str(error)) from None
    for sink in monitor.sinks:
        if isinstance(sink, LivePage):
            print(f"live page: {sink.url}", flush=True)


def _many(args: argparse.Namespace) -> bool:
    """Whether the arguments ask for the multi-stream engine."""
    streams = len(args.input) + max(len(args.camera), len(args.mic))
    return (
        streams > 1
        or args.sources is not None
        or args.output_dir is not None
        or args.ray is not None
    )


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    live = bool(args.camera or args.mic)
    streams = bool(args.input) or live or args.sources is not None
    chosen = sum([streams, args.demo, args.list_devices])
    if chosen != 1:
        parser.error(
            "give one source: --camera and --mic, --input, --sources, --demo or --list-devices"
        )
    if len(args.camera) != len(args.mic):
        parser.error(
            "--camera and --mic go together, one --mic per --camera: audio-visual events are "
            "seen and heard"
        )
    if args.realtime and not (args.input or args.sources):
        parser.error("--realtime paces --input and the files of --sources only")
    args.many = _many(args)
    if args.many:
        for flag, given in (("--show", args.show), ("--stats", args.stats is not None)):
            if given:
                parser.error(f"{flag} shows one stream; it does not go with many streams")
    else:  # one stream: the single-stream path takes plain values
        args.input = args.input[0] if args.input else None
        args.camera = args.camera[0] if args.camera else None
        args.mic = args.mic[0] if args.mic else None
    if args.ray_actors is not None and (args.ray is None or args.ray_actors < 1):
        parser.error("--ray-actors N goes with --ray, N at least 1")
    if (args.seed is not None or args.duration is not None) and not args.demo:
        parser.error("--seed and --duration are options of --demo")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        parser.error(f"--duration must be a finite number of seconds above 0, got {args.duration}")
    if args.hop is not None and args.hop < 1:
        parser.error("--hop must be between 1 and the model's window (in steps)")
    try:
        check("threads", args.threads, "--threads")
        if args.stats is not None:
            check_positive(args.stats, "--stats (seconds of stream between stats)")
    except LimitError as error:
        parser.error(str(error))
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold is a score, between 0 and 1")
    args.sinks = _make_sinks(parser, args)


def _open_model(args: argparse.Namespace) -> ModelDir:
    """The ``--model`` directory on ``--backend``, with ``--hop`` checked against its window."""
    try:
        model = ModelDir(args.model, args.backend, args.threads)
    except (ModelDirError, BackendUnavailable, ValueError) as error:
        raise CliError(str(error)) from None
    if args.hop is not None and args.hop > model.info.window:
        model.close()
        raise UsageError(
            f"--hop {args.hop} is longer than the model's window ({model.info.window} steps): "
            "steps between windows would never be seen; give 1 to the window"
        )
    return model


def _open_source(args: argparse.Namespace) -> MediaSource:
    if args.input is not None:
        problem = input_file_problem(args.input)
        if problem is not None:
            raise CliError(f"--input {problem}")
        source = FileSource(args.input, realtime=args.realtime)
        for track, present in (("audio", source.has_audio), ("video", source.has_video)):
            if not present:
                source.close()
                raise CliError(
                    f"input file '{args.input}' has no {track} track: audio-visual events are "
                    "seen and heard, so loco-stream needs both"
                )
        return source
    if args.demo:
        seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
        try:
            return DemoSource(seed=seed, duration=args.duration)
        except ValueError as error:
            raise CliError(f"--demo: {error}") from None
    return ReopeningSource(args.camera, args.mic, args.reconnect)


class _Output:
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


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


class _Stopper:
    """SIGINT/SIGTERM ask the stream to stop after the current item; a second signal forces it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _demo_report(source: DemoSource, finals: list[Event]) -> str:
    """Which true events of the demo scenario a final event of their class found."""
    lines, used = [], set()
    for start, end, label_id in source.ground_truth:
        best, best_iou = None, FOUND_IOU
        for event in finals:
            if event.label_id != label_id or event.id in used:
                continue
            iou = float(temporal_iou(start, end, event.start, event.end))
            if iou >= best_iou:
                best, best_iou = event, iou
        truth = f"{source.label(label_id)}  {start:.2f}–{end:.2f} s"
        if best is None:
            lines.append(f"  missed  {truth}")
        else:
            used.add(best.id)
            lines.append(f"  found   {truth}  as #{best.id} {best.start:.2f}–{best.end:.2f} s")
    found = len(used)
    header = (
        f"demo: {found} of {len(source.ground_truth)} true events found (tIoU >= {FOUND_IOU}), "
        f"{len(finals) - found} other events"
    )
    return "\n".join([header, *lines])


def _run(args: argparse.Namespace, stopper: _Stopper) -> int:
    show = args.show
    if show:
        reason = overlay_unavailable()
        if reason:
            _warn(f"--show is not possible here: {reason}; going on without the overlay")
            show = False
    model = _open_model(args)
    try:
        source = _open_source(args)
    except (SourceError, CliError) as error:
        model.close()
        raise CliError(str(error)) from None
    monitor = Monitor(args.sinks, stream=_single_name(args))
    try:
        _open_monitor(monitor)
        writer = JsonlWriter(args.output) if args.output is not None else None
    except (CliError, OutputInUse, OSError) as error:
        monitor.close()
        source.close()
        model.close()
        if isinstance(error, CliError):
            raise
        if isinstance(error, OutputInUse):
            raise CliError(f"cannot write --output {error}") from None
        raise CliError(f"cannot write --output '{args.output}': {error.strerror}") from None
    output = _Output(writer) if writer is not None else None
    monitor.write = output.write if output is not None else None
    print(f"model: {model.description}; source: {source.description}", flush=True)

    stitch = StitchConfig(threshold=args.threshold)
    engine = StreamEngine(model, stitch, args.hop, source.clock.now if source.is_live else None)
    overlay = Overlay() if show else None
    finals: list[Event] = []
    next_stats = args.stats

    def on_event(event: Event) -> None:
        monitor.on_record(event.to_record())
        print_event(event)
        if event.type == "end":
            finals.append(event)
        if overlay is not None:
            overlay.on_event(event)

    def on_item(item: Item) -> None:
        nonlocal next_stats
        monitor.on_item(item)
        if overlay is not None and isinstance(item, VideoFrame):
            overlay.show(item.image, item.t)
        if next_stats is not None and engine.now >= next_stats:
            next_stats += args.stats
            print(engine.stats.line(), flush=True)
            monitor.on_record(monitor.with_counters(engine.stats.to_record(engine.emission_time())))

    def should_stop() -> bool:
        monitor.pump()
        return stopper.requested or (overlay is not None and overlay.quit)

    failure: SourceError | StreamStalled | None = None
    try:
        engine.run(source, on_event, should_stop, on_item)
    except (SourceError, StreamStalled) as error:  # the events were closed and written by run()
        failure = error
    except KeyboardInterrupt:  # a second signal: run() still wrote what it had
        pass
    finally:
        source.close()
        monitor.finish()
        stats = engine.stats
        print(stats.line(), flush=True)
        monitor.on_record(monitor.with_counters(stats.to_record(engine.emission_time())))
        if writer is not None:
            writer.close()
        monitor.close()
        if monitor.sinks:
            print(monitor.summary(), flush=True)
        if overlay is not None:
            overlay.close()
        model.close()
    if isinstance(source, DemoSource):
        print(_demo_report(source, finals), flush=True)
    if failure is not None:
        raise CliError(f"{failure} (the events so far were closed and written)")
    if output is not None and output.failed:
        return 1
    if stats.steps == 0 and not stopper.requested:
        raise CliError(
            f"{source.description} ended after {stats.audio_seconds:.2f} s of audio and "
            f"{stats.frames} frames, before one {model.info.step_seconds:g}-s step had both: "
            "nothing to detect"
        )
    return 0


def _stream_specs(args: argparse.Namespace) -> list[StreamSpec]:
    """The streams of --input, --camera/--mic and --sources, in that order."""
    specs: list[StreamSpec] = []
    names = unique_names([path.stem for path in args.input])
    names += unique_names([f"camera{i + 1}" for i in range(len(args.camera))])
    options = {"threshold": args.threshold}
    for name, path in zip(names, args.input, strict=False):
        specs.append(StreamSpec(name, input=path, realtime=args.realtime, **options))
    for name, camera, mic in zip(names[len(args.input) :], args.camera, args.mic, strict=True):
        specs.append(StreamSpec(name, camera=camera, microphone=mic, reconnect=args.reconnect))
    if args.sources is not None:
        try:
            listed = read_stream_list(args.sources, args.threshold, args.realtime, args.reconnect)
        except StreamListError as error:
            raise CliError(str(error)) from None
        clash = sorted({spec.name for spec in specs} & {spec.name for spec in listed})
        if clash:
            raise CliError(
                f"--sources {args.sources} names streams that --input or --camera already "
                f"named: {', '.join(clash)}"
            )
        specs += listed
    return specs


class _Sinks:
    """Where the events of many streams go: DIR/NAME.jsonl per stream, one merged file, and the
    terminal (each line prefixed with the stream's name)."""

    def __init__(
        self, output: Path | None, output_dir: Path | None, names: list[str], monitor: Monitor
    ) -> None:
        self.monitor = monitor
        monitor.write = lambda record: self.write(record["stream"], record)
        self.merged: _Output | None = None
        self.per_stream: dict[str, _Output] = {}
        self.failed = False  # an output file could not be written to its end
        try:
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                for name in names:
                    self.per_stream[name] = _Output(JsonlWriter(output_dir / f"{name}.jsonl"))
            if output is not None:
                self.merged = _Output(JsonlWriter(output))
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


def _run_many(args: argparse.Namespace, stopper: _Stopper) -> int:
    """Many streams on one batched engine; 1 when any stream failed (the others ran on)."""
    try:
        specs = _stream_specs(args)
    except ValueError as error:  # a stream name or value StreamSpec refuses
        raise CliError(str(error)) from None
    model = _open_model(args)
    try:
        engine = MultiStreamEngine(model, threads=args.threads, hop=args.hop)
    except (ModelDirError, BackendUnavailable) as error:
        model.close()
        raise CliError(str(error)) from None
    monitor = Monitor(args.sinks)
    try:  # Ray and the sinks are reached before any output file is made
        run = engine.run if args.ray is None else _ray_run(args)
        _open_monitor(monitor)
        sinks = _Sinks(args.output, args.output_dir, [spec.name for spec in specs], monitor)
    except CliError:
        monitor.close()
        engine.close()
        model.close()
        raise
    if monitor.evidence is not None:  # the readers hand each item to the evidence too
        specs = [TappedSpec(**_fields(spec), tap=monitor.on_item) for spec in specs]
    print(f"model: {engine.description}; {len(specs)} streams", flush=True)

    def on_start(name: str, description: str) -> None:
        print(f"[{name}] source: {description}", flush=True)

    def should_stop() -> bool:
        monitor.pump()
        return stopper.requested

    try:
        reports = run(specs, sinks.on_event, sinks.on_end, should_stop, on_start)
    except KeyboardInterrupt:  # a second signal: run() closed the streams it had
        reports = []
    finally:
        monitor.finish()
        sinks.close()
        monitor.close()
        if monitor.sinks:
            print(monitor.summary(), flush=True)
        engine.close()
        model.close()
    failed = [report.name for report in reports if report.error is not None]
    stopped = sum(report.stopped for report in reports if report.error is None)
    print(
        f"{len(specs)} streams: {len(reports) - len(failed) - stopped} ended, {stopped} stopped, "
        f"{len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""),
        flush=True,
    )
    return 1 if failed or sinks.failed else 0


def _fields(spec: StreamSpec) -> dict:
    return {field.name: getattr(spec, field.name) for field in dataclasses.fields(StreamSpec)}


def _ray_run(args: argparse.Namespace):
    """``--ray``: the streams on Ray actors (``loco_stream.stream.ray_cluster``)."""
    from loco_stream.stream.ray_cluster import RayUnavailable, ray_runner

    try:
        return ray_runner(
            args.ray,
            args.model,
            args.backend,
            args.hop,
            args.ray_actors,
            lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True),
        )
    except (RayUnavailable, ValueError) as error:
        raise CliError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Run loco-stream; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    for level in (logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format=f"{PROG}: %(levelname)s: %(message)s", level=logging.WARNING)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our messages say it
    warnings.showwarning = lambda message, *rest, **kwargs: _warn(str(message))
    if args.list_devices:
        print(list_devices())
        return 0
    stopper = _Stopper()
    try:
        return _run_many(args, stopper) if args.many else _run(args, stopper)
    except UsageError as error:
        parser.error(str(error))
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    finally:
        stopper.restore()


if __name__ == "__main__":
    sys.exit(main())
