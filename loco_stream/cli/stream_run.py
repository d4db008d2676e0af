"""Running loco-stream once its arguments are parsed: one stream on `StreamEngine`, or many on
`MultiStreamEngine` (here or on Ray), each summarised at its end; Ctrl-C and SIGTERM stop it."""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import signal
import sys

import cv2

from loco_stream.model_dir import ModelDir, ModelDirError
from loco_stream.postprocess import temporal_iou
from loco_stream.runtime import BackendUnavailable
from loco_stream.sinks import Monitor
from loco_stream.sources import MediaSource, ReopeningSource, SourceError, list_devices
from loco_stream.sources.base import Item, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.sources.file import input_file_problem, open_audio_visual
from loco_stream.stream.engine import StreamEngine
from loco_stream.stream.lane import StreamSpec
from loco_stream.stream.multi import MultiStreamEngine
from loco_stream.stream.output import (
    JsonlWriter,
    OutputInUse,
    Overlay,
    overlay_unavailable,
    print_event,
)
from loco_stream.stream.stitch import Event, StitchConfig
from loco_stream.stream.stream_list import StreamListError, read_stream_list, unique_names
from loco_stream.stream.tap import TappedSpec
from loco_stream.stream.timeline import StreamStalled

from ..messages import plain_messages
from .stream_errors import PROG, CliError, UsageError
from .stream_outputs import ManyStreamOutputs, Output, build_sinks, open_monitor

FOUND_IOU = 0.5  # --demo: a true event is found by a final event of its class at this tIoU


def run_streams(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the checked arguments (`stream_options.check_args`); returns the exit status."""
    args.sinks = build_sinks(parser, args)
    plain_messages(PROG)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our messages say it
    if args.list_devices:
        print(list_devices())
        return 0
    stopper = Stopper()
    try:
        return _run_many(args, stopper) if args.many else _run_one(args, stopper)
    except UsageError as error:
        parser.error(str(error))
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    finally:
        stopper.restore()


class Stopper:
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


# ---- one stream ----


def _open_source(args: argparse.Namespace) -> MediaSource:
    if args.input is not None:
        problem = input_file_problem(args.input)
        if problem is not None:
            raise CliError(f"--input {problem}")
        return open_audio_visual(args.input, args.realtime, needs="loco-stream")
    if args.demo:
        seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
        try:
            return DemoSource(seed=seed, duration=args.duration)
        except ValueError as error:
            raise CliError(f"--demo: {error}") from None
    return ReopeningSource(args.camera, args.mic, args.reconnect)


def _single_name(args: argparse.Namespace) -> str:
    """The name of a single stream in evidence files and MQTT topics."""
    if args.input is not None:
        return re.sub(r"[^A-Za-z0-9._-]", "_", args.input.stem)[:64] or "input"
    return "demo" if args.demo else "camera1"


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


def _run_one(args: argparse.Namespace, stopper: Stopper) -> int:
    show = args.show
    if show:
        reason = overlay_unavailable()
        if reason:
            print(
                f"{PROG}: warning: --show is not possible here: {reason}; going on without the "
                "overlay",
                file=sys.stderr,
                flush=True,
            )
            show = False
    model = _open_model(args)
    try:
        source = _open_source(args)
    except (SourceError, CliError) as error:
        model.close()
        raise CliError(str(error)) from None
    monitor = Monitor(args.sinks, stream=_single_name(args))
    try:
        open_monitor(monitor)
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
    output = Output(writer) if writer is not None else None
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


# ---- many streams ----


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


def _run_many(args: argparse.Namespace, stopper: Stopper) -> int:
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
        open_monitor(monitor)
        outputs = ManyStreamOutputs(
            args.output, args.output_dir, [spec.name for spec in specs], monitor
        )
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
        reports = run(specs, outputs.on_event, outputs.on_end, should_stop, on_start)
    except KeyboardInterrupt:  # a second signal: run() closed the streams it had
        reports = []
    finally:
        monitor.finish()
        outputs.close()
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
    return 1 if failed or outputs.failed else 0


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
