"""Build the TensorRT engines of a model directory (`export.engines` does the work).

    python export/to_trt.py --model DIR [--fp16 | --int8] [--workspace MB] [--out DIR]

(``--onnx DIR`` is the same as ``--model DIR``.) Exit status: 0 built; 1 a bad model directory, a
graph that is not ready or did not build; 2 TensorRT (10 or later) or an NVIDIA GPU is missing on
this machine (the message says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/to_trt.py`: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.engines import build_model_dir, report  # noqa: E402


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", type=Path, metavar="DIR", help="model directory")
    where.add_argument("--onnx", type=Path, metavar="DIR", dest="model", help="same as --model")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="window graph from loco_fp16.onnx")
    precision.add_argument("--int8", action="store_true", help="window graph from loco_int8.onnx")
    parser.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit")
    parser.add_argument("--out", type=Path, metavar="DIR", help="default: the model directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    return build_model_dir(args.model, precision, args.out, args.workspace, report)


if __name__ == "__main__":
    sys.exit(main())
