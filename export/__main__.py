"""``python -m export``: write and verify a whole model directory, in every format asked for.

    python -m export [--checkpoint LOCO.pt] [--extractors EXTRACTORS.pt] --out DIR
                     [--window T] [--hop STEPS] [--config CFG] [--results RESULTS.json]
                     [--fp16] [--int8 --calib VIDEOS_DIR [--calib-clips N]] [--batch] [--trt]

Without ``--checkpoint`` the package's default model is exported; ``--extractors`` defaults to
the ``extractors.pt`` beside the checkpoint. The formats (``FORMATS``), each a stage with its
lines under one progress bar:

    format  flag                 writes                                   checked
    onnx    (always)             loco.onnx, audio_extractor.onnx,         onnx.checker, TensorRT
                                 visual_extractor.onnx, loco.pt,          readiness, ONNX Runtime
                                 extractors.pt                            vs torch (1e-4)
    fp16    --fp16               loco_fp16.onnx (fp16 inside, fp32 I/O)   error vs torch, readiness
    int8    --int8 --calib DIR   loco_int8.onnx (Q/DQ, calibrated on the  error vs fp32, readiness
                                 feature windows of DIR's videos)
    batch   --batch              loco_batch.onnx and the extractors'      onnx.checker, ONNX
                                 *_batch.onnx: a free batch axis, one     Runtime vs torch on
                                 call for many streams                    batches (1e-4)
    trt     --trt                *.engine (export/to_trt.py; --fp16 or    TensorRT's own build
                                 --int8 pick the window graph's engine)

After each format the model card (``model_card.json``: metadata, SHA-256 and signature of every
file, see ``loco_stream.bundle``) is rewritten and the directory read back through the same
verification the runtime runs, so the directory is complete and loadable after every stage.
``--results`` stores what training measured in the card; re-exporting the same weights into a
directory keeps the results its card already has. A directory holding a model of other weights is
not replaced without ``--force``.

Exit status: 0 written and verified; 1 an export failed, a graph breaks a constraint or does not
match torch, or an engine did not build; 2 bad arguments, checkpoint, config or calibration
videos, or ``--trt`` where TensorRT or a GPU is missing (the directory is complete without it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMAT_TABLE = __doc__[__doc__.index("    format  flag") : __doc__.index("\n\nAfter each format")]
DEFAULT_HOP_STEPS = 4  # loco_stream.bundle's: steps between two windows in the stream
CALIBRATION_CLIPS = 40  # --calib-clips


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Write and verify a whole model directory, in every format asked for.",
        epilog=f"formats:\n{FORMAT_TABLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="the LoCo checkpoint to export (default: the packaged default model's loco.pt)",
    )
    parser.add_argument(
        "--extractors", type=Path, help="its extractors (default: extractors.pt beside it)"
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--window", type=int, help="T, steps per window (default: the model's)")
    parser.add_argument(
        "--hop",
        type=int,
        default=DEFAULT_HOP_STEPS,
        help=f"steps between two windows in the stream (default: {DEFAULT_HOP_STEPS})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML whose data and decode sections apply (default: the checkpoint's own)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="JSON of measured results for the card (default: none; a re-export keeps the card's)",
    )
    parser.add_argument("--fp16", action="store_true", help="also write loco_fp16.onnx")
    parser.add_argument("--int8", action="store_true", help="also write loco_int8.onnx (Q/DQ)")
    parser.add_argument(
        "--calib",
        type=Path,
        metavar="VIDEOS_DIR",
        help="videos for --int8 (default: none)",
    )
    parser.add_argument(
        "--calib-clips",
        type=int,
        default=CALIBRATION_CLIPS,
        help=f"videos used (default: {CALIBRATION_CLIPS})",
    )
    parser.add_argument(
        "--batch", action="store_true", help="also write the graphs with a batch axis (*_batch)"
    )
    parser.add_argument("--trt", action="store_true", help="also build TensorRT engines")
    parser.add_argument(
        "--force", action="store_true", help="replace a model of other weights already in --out"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.int8 and args.calib is None:
        parser.error("--int8 needs --calib VIDEOS_DIR (videos whose features calibrate it)")
    if args.calib is not None and not args.int8:
        parser.error("--calib goes with --int8")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run python -m export; returns the exit status."""
    args = parse_args(argv)
    from loco_stream.extras import require_extra

    require_extra("torch", "train", "python -m export")  # one line, not a traceback, without it
    from export.job import export_as_asked  # torch, ONNX Runtime: once the arguments hold

    return export_as_asked(args)


if __name__ == "__main__":
    sys.exit(main())
