"""Which events a detector finds, by their length: recall per ground-truth duration bucket.

    python benchmarks/bench_event_lengths.py --annotations data/synth/annotations.json
        --results results_test.json [--split test] [--score 0.3] [--tiou 0.5]

``--results`` is a UnAV-style results file (``loco-detect --output`` or ``python -m
train.evaluate --output``). An event counts as found when a prediction of its class overlaps it
with tIoU >= ``--tiou`` at a score >= ``--score``. Prints one row per bucket: events, the share
found, and the median of each event's best matching score (0 when nothing matches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.evaluation import (  # noqa: E402
    EvaluationInputError,
    load_ground_truth,
    load_predictions,
)
from loco_stream.postprocess import temporal_iou  # noqa: E402

BUCKETS_S = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, float("inf")))


def best_matching_score(
    event: tuple[float, float, int], predictions: list[tuple], min_tiou: float
) -> float:
    """The highest score of a same-class prediction overlapping ``event`` by >= ``min_tiou``."""
    start, end, label = event
    same_class = [p for p in predictions if p[2] == label]
    if not same_class:
        return 0.0
    starts, ends, _, scores = (np.array(column) for column in zip(*same_class, strict=True))
    overlapping = temporal_iou(start, end, starts, ends) >= min_tiou
    return float(scores[overlapping].max()) if overlapping.any() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--score", type=float, default=0.3)
    parser.add_argument("--tiou", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        truth = load_ground_truth(args.annotations, args.split)
        predictions = load_predictions(args.results)
    except (OSError, EvaluationInputError) as error:
        print(f"bench_event_lengths: error: {error}", file=sys.stderr)
        return 2
    scores: dict[tuple, list[float]] = {bucket: [] for bucket in BUCKETS_S}
    for video, events in truth.items():
        for event in events:
            length = event[1] - event[0]
            bucket = next(b for b in BUCKETS_S if b[0] <= length < b[1])
            scores[bucket].append(best_matching_score(event, predictions.get(video, []), args.tiou))
    print(
        f"| event length | events | found (score >= {args.score}, tIoU >= {args.tiou}) "
        "| median best score |"
    )
    print("|---|---:|---:|---:|")
    for (low, high), values in scores.items():
        if not values:
            continue
        found = np.mean(np.array(values) >= args.score) * 100
        name = f">= {low:g} s" if high == float("inf") else f"{low:g}-{high:g} s"
        print(f"| {name} | {len(values)} | {found:.1f}% | {np.median(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
