"""loco-stream: detect audio-visual events online from a camera and a microphone, a file, or a demo.

    loco-stream --camera 0 --mic default --output events.jsonl
    loco-stream --input clip.mp4 [--realtime]
    loco-stream --demo [--seed 7] [--duration 30]

Each event is printed as it is confirmed (START) and when it is final (END), and written to
``--output`` as JSON lines (docs/output.md). Ctrl-C or SIGTERM closes the open events, writes them,
prints the stats and exits 0. Argument errors exit 2 (argparse's usage line); startup problems
exit 1 with one ``loco-stream: error:`` line and write nothing. ``--output`` is locked while it
is written: a second writer of the same file is refused.
"""

from __future__ import annotations

import argparse
import logging
import math
import secrets
import signal
import sys
import warnings
from pathlib import Path

import cv2

from loco_stream.model_dir import ModelDir, ModelDirError
from loco_stream.postprocess import temporal_iou
from loco_stream.runtime import BACKENDS, BackendUnavailable
from loco_stream.sources import (
    FileSource,
    MediaSource,
    ReopeningSource,
    SourceError,
    list_devices,
)
from loco_stream.sources.base import Item, VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.engine import StreamEngine
from loco_stream.stream.output import (
    JsonlWriter,
    OutputInUse,
    Overlay,
    overlay_unavailable,
    print_event,
)
from loco_stream.stream.stitch import DEFAULT_THRESHOLD, Event, StitchConfig
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
    source = parser.add_argument_group("source (one of)")
    source.add_argument("--camera", metavar="SPEC", help="camera index, device, URL or pipe")
    source.add_argument("--mic", metavar="DEVICE", help="microphone name, index or 'default'")
    source.add_argument("--input", metavar="FILE", type=Path, help="a video file with audio")
    source.add_argument("--realtime", action="store_true", help="pace --input in real time")
    source.add_argument("--demo", action="store_true", help="a synthetic scenario, live")
    source.add_argument("--seed", type=int, help="--demo scenario seed (default: a fresh one)")
    source.add_argument("--duration", type=float, help="--demo length in seconds")
    source.add_argument("--list-devices", action="store_true", help="list cameras and mics")
    parser.add_argument("--output", metavar="FILE.jsonl", type=Path, help="JSON-lines events")
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
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    live = args.camera is not None or args.mic is not None
    chosen = sum([live, args.input is not None, args.demo, args.list_devices])
    if chosen != 1:
        parser.error("give one source: --camera and --mic, --input, --demo or --list-devices")
    if live and (args.camera is None or args.mic is None):
        parser.error("--camera and --mic go together: audio-visual events are seen and heard")
    if args.realtime and args.input is None:
        parser.error("--realtime paces --input only")
    if (args.seed is not None or args.duration is not None) and not args.demo:
        parser.error("--seed and --duration are options of --demo")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        parser.error(f"--duration must be a finite number of seconds above 0, got {args.duration}")
    if args.hop is not None and args.hop < 1:
        parser.error("--hop must be between 1 and the model's window (in steps)")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold is a score, between 0 and 1")


def _open_source(args: argparse.Namespace) -> MediaSource:
    if args.input is not None:
        if args.input.is_dir():
            raise CliError(
                f"--input '{args.input}' is a folder: give one video file "
                "(loco-detect runs over many files)"
            )
        if not args.input.is_file():
            raise CliError(f"input file '{args.input}' does not exist")
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
    try:
        source = _open_source(args)
    except (SourceError, CliError) as error:
        model.close()
        raise CliError(str(error)) from None
    try:
        writer = JsonlWriter(args.output) if args.output is not None else None
    except OutputInUse as error:
        source.close()
        model.close()
        raise CliError(f"cannot write --output {error}") from None
    except OSError as error:
        source.close()
        model.close()
        raise CliError(f"cannot write --output '{args.output}': {error.strerror}") from None
    print(f"model: {model.description}; source: {source.description}", flush=True)

    stitch = StitchConfig(threshold=args.threshold)
    engine = StreamEngine(model, stitch, args.hop, source.clock.now if source.is_live else None)
    overlay = Overlay() if show else None
    finals: list[Event] = []
    next_stats = args.stats

    def on_event(event: Event) -> None:
        if writer is not None:
            writer.write(event.to_record())
        print_event(event)
        if event.type == "end":
            finals.append(event)
        if overlay is not None:
            overlay.on_event(event)

    def on_item(item: Item) -> None:
        nonlocal next_stats
        if overlay is not None and isinstance(item, VideoFrame):
            overlay.show(item.image, item.t)
        if next_stats is not None and engine.now >= next_stats:
            next_stats += args.stats
            print(engine.stats.line(), flush=True)
            if writer is not None:
                writer.write(engine.stats.to_record(engine.emission_time()))

    def should_stop() -> bool:
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
        stats = engine.stats
        print(stats.line(), flush=True)
        if writer is not None:
            writer.write(stats.to_record(engine.emission_time()))
            writer.close()
        if overlay is not None:
            overlay.close()
        model.close()
    if isinstance(source, DemoSource):
        print(_demo_report(source, finals), flush=True)
    if failure is not None:
        raise CliError(f"{failure} (the events so far were closed and written)")
    if stats.steps == 0 and not stopper.requested:
        raise CliError(
            f"{source.description} ended after {stats.audio_seconds:.2f} s of audio and "
            f"{stats.frames} frames, before one {model.info.step_seconds:g}-s step had both: "
            "nothing to detect"
        )
    return 0


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
        return _run(args, stopper)
    except UsageError as error:
        parser.error(str(error))
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    finally:
        stopper.restore()


if __name__ == "__main__":
    sys.exit(main())
