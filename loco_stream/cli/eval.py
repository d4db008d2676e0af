"""loco-eval: score detections against UnAV-100 ground truth (mAP at tIoU 0.1-0.9, in percent)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from loco_stream.evaluation import (
    EvaluationInputError,
    EvaluationResult,
    evaluate,
    load_ground_truth,
    load_predictions,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loco-eval",
        description="mAP of UnAV-style detections at tIoU 0.1, 0.2, ..., 0.9 and their average.",
    )
    parser.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="UnAV-100 annotation JSON ({'database': ...})",
    )
    parser.add_argument(
        "--predictions", required=True, type=Path, help="detections JSON ({'results': ...})"
    )
    parser.add_argument(
        "--split", default=None, help="subset to evaluate, e.g. test (default: every video)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"tiou": [...], "mAP": [...], "average": x} instead of a table',
    )
    return parser


def format_table(result: EvaluationResult, split: str | None = None) -> str:
    """A readable table of mAP (%) at each tIoU and the average."""
    lines = [
        f"videos: {result.num_videos}  classes: {len(result.class_ids)}  split: {split or 'all'}",
        "tIoU   mAP (%)",
        *(f"{t:<6.2f} {m:7.2f}" for t, m in zip(result.tious, result.mAP, strict=True)),
        f"{'avg':<6} {result.average:7.2f}",
    ]
    if result.num_ignored:
        lines.append(
            f"note: ignored {result.num_ignored} predictions "
            "(videos not in the ground truth or classes absent from it)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run loco-eval; returns the exit status (2 for unusable input)."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictions = load_predictions(args.predictions)
            if not any(predictions.values()):
                raise EvaluationInputError(
                    f"{args.predictions}: holds no predictions ({len(predictions)} video(s), none "
                    "with a detection); nothing to score"
                )
            result = evaluate(load_ground_truth(args.annotations, args.split), predictions)
    except EvaluationInputError as e:
        print(f"loco-eval: error: {e}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"loco-eval: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"tiou": result.tious, "mAP": result.mAP, "average": result.average}))
    else:
        print(format_table(result, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
