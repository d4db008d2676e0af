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

The options are in `stream_options`, where the records go in `stream_outputs`, the run and its
summary in `stream_run`; ``--help`` and argument errors import nothing heavy.
"""

from __future__ import annotations

import sys

from .stream_options import build_parser, check_args


def main(argv: list[str] | None = None) -> int:
    """Run loco-stream; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    from .stream_run import run_streams  # ONNX Runtime, OpenCV, PyAV: once the arguments hold

    return run_streams(parser, args)


if __name__ == "__main__":
    sys.exit(main())
