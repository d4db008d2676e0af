"""loco-stream's options: the parser and the checks of what only a combination shows to be wrong.

Light on purpose: nothing here imports ONNX Runtime, OpenCV or PyAV, so ``--help`` and argument
errors come at once.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from loco_stream.limits import LimitError, check, check_positive

from ..defaults import (
    BACKENDS,
    DEFAULT_THRESHOLD,
    EVIDENCE_CPU_PERCENT,
    EVIDENCE_MAX_MB,
    EVIDENCE_POST_SECONDS,
    EVIDENCE_PRE_SECONDS,
    EVIDENCE_WIDTH,
    LIVE_PAGE_ADDRESS,
)
from .stream_errors import PROG

STATS_INTERVAL_S = 10.0  # --stats without SECONDS, in stream seconds


def build_parser() -> argparse.ArgumentParser:
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
        help="camera index, device, URL or pipe; repeat with --mic for many (default: none)",
    )
    source.add_argument(
        "--mic",
        metavar="DEVICE",
        action="append",
        default=[],
        help="microphone name, index or 'default', one per --camera (default: none)",
    )
    source.add_argument(
        "--input",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a video file with audio; repeat for many streams (default: none)",
    )
    source.add_argument(
        "--sources",
        metavar="STREAMS.yaml",
        type=Path,
        help="a list of streams, run as many streams (default: none)",
    )
    source.add_argument(
        "--realtime",
        action="store_true",
        help="pace --input in real time (default: as fast as it decodes)",
    )
    source.add_argument("--demo", action="store_true", help="a synthetic scenario, live")
    source.add_argument("--seed", type=int, help="--demo scenario seed (default: a fresh one)")
    source.add_argument(
        "--duration", type=float, help="--demo length in seconds (default: the scenario's own)"
    )
    source.add_argument(
        "--list-devices", action="store_true", help="list cameras and microphones, then exit"
    )
    parser.add_argument(
        "--output",
        metavar="FILE.jsonl",
        type=Path,
        help="the events as JSON lines, of every stream (default: printed only)",
    )
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        type=Path,
        help="many streams: DIR/NAME.jsonl per stream (default: none)",
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        type=Path,
        help="model directory, or a packaged model: default or efficientnet, both knowing 16 "
        "synthetic demo classes only (default: default)",
    )
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        choices=BACKENDS,
        help="runtime of the graphs (default: onnxruntime, on the CPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per graph (default: 2)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"minimum score of emitted events (default: {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--hop", type=int, help="steps between windows, 1 to the window (default: the model's)"
    )
    parser.add_argument(
        "--show", action="store_true", help="an overlay window of the stream (needs a display)"
    )
    parser.add_argument(
        "--stats",
        type=float,
        nargs="?",
        const=STATS_INTERVAL_S,
        metavar="SECONDS",
        help="print stats every SECONDS of stream (default: at the end only; SECONDS "
        f"{STATS_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="reopen a live source that stops (default: its stream ends)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="many streams on a Ray cluster: auto (this machine's, else a private one on "
        '127.0.0.1), local, or an address (pip install "loco-stream[ray]"; default: no Ray; '
        "ADDRESS auto)",
    )
    parser.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="with --ray: N actors (default: one per node)",
    )
    _monitoring_options(parser)
    return parser


def _monitoring_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "monitoring", "evidence files, MQTT, webhooks, a live page (docs/monitoring.md)"
    )
    group.add_argument(
        "--evidence",
        metavar="DIR",
        type=Path,
        help="a snapshot and a clip of each event in DIR (default: none)",
    )
    group.add_argument(
        "--pre",
        type=float,
        metavar="SECONDS",
        help=f"clip before an event (default: {EVIDENCE_PRE_SECONDS:g})",
    )
    group.add_argument(
        "--post",
        type=float,
        metavar="SECONDS",
        help=f"clip after an event (default: {EVIDENCE_POST_SECONDS:g})",
    )
    group.add_argument(
        "--evidence-fps",
        type=float,
        metavar="FPS",
        help="at most FPS frames a second in clips: less CPU (default: the source's rate)",
    )
    group.add_argument(
        "--evidence-width",
        type=int,
        metavar="PX",
        help=f"clips at most PX wide, scaled down: less CPU (default: {EVIDENCE_WIDTH})",
    )
    group.add_argument(
        "--evidence-cpu",
        metavar="PERCENT",
        help=(
            "the clip encoder's CPU at most PERCENT of the rest of the run's; over it, clips keep "
            f"fewer frames (2 a second at least), all their sound; none: no bound (default: "
            f"{EVIDENCE_CPU_PERCENT:g})"
        ),
    )
    group.add_argument(
        "--evidence-max-mb",
        type=float,
        metavar="MB",
        help=f"bound of DIR, oldest first (default: {EVIDENCE_MAX_MB:g})",
    )
    group.add_argument(
        "--mqtt",
        metavar="HOST[:PORT]",
        help="publish the records to a broker (default: none; PORT 1883)",
    )
    group.add_argument("--mqtt-prefix", metavar="PREFIX", help="topic prefix (default: loco)")
    group.add_argument("--mqtt-tls", action="store_true", help="TLS to the broker (port 8883)")
    group.add_argument(
        "--webhook", metavar="URL", help="POST each record as JSON to URL (default: none)"
    )
    group.add_argument(
        "--serve",
        nargs="?",
        const=LIVE_PAGE_ADDRESS,
        metavar="HOST:PORT",
        help=f"a live page on HOST:PORT (default: none; HOST:PORT {LIVE_PAGE_ADDRESS})",
    )
    group.add_argument(
        "--serve-remote", action="store_true", help="allow --serve on a non-loopback address"
    )


def _many(args: argparse.Namespace) -> bool:
    """Whether the arguments ask for the multi-stream engine."""
    streams = len(args.input) + max(len(args.camera), len(args.mic))
    return (
        streams > 1
        or args.sources is not None
        or args.output_dir is not None
        or args.ray is not None
    )


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse's error for a combination that cannot run; sets ``args.many`` (the multi-stream
    engine), and for one stream turns the repeatable sources into plain values."""
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
    _check_monitoring(parser, args)


def _check_monitoring(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse's error for a monitoring option given without the one it belongs to."""
    needs = [
        ("--pre", args.pre, "--evidence", args.evidence),
        ("--post", args.post, "--evidence", args.evidence),
        ("--evidence-max-mb", args.evidence_max_mb, "--evidence", args.evidence),
        ("--evidence-fps", args.evidence_fps, "--evidence", args.evidence),
        ("--evidence-width", args.evidence_width, "--evidence", args.evidence),
        ("--evidence-cpu", args.evidence_cpu, "--evidence", args.evidence),
        ("--mqtt-prefix", args.mqtt_prefix, "--mqtt", args.mqtt),
        ("--mqtt-tls", args.mqtt_tls or None, "--mqtt", args.mqtt),
        ("--serve-remote", args.serve_remote or None, "--serve", args.serve),
    ]
    for flag, given, base, base_given in needs:
        if given is not None and base_given is None:
            parser.error(f"{flag} is an option of {base}")
    if args.evidence is not None and args.ray is not None:
        parser.error("--evidence does not go with --ray: the frames stay on the Ray actors")
