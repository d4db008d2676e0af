"""Run a trained model over a split's features, write UnAV-style results, and score them.

python -m train.evaluate --config configs/X.yaml --checkpoint runs/X/best.pt [--split test]
    [--output results.json] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from loco_stream.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
)
from loco_stream.evaluation import (
    EvaluationResult,
    evaluate,
    load_ground_truth,
    load_predictions,
)
from loco_stream.model import LoCo, WindowGraph
from loco_stream.offline import detect_features
from loco_stream.postprocess import point_grid, steps_to_seconds

from .checkpoint import CheckpointError, load_model
from .data import DataError, VideoRecord, load_features, load_records, usable_records


def predict(
    model: LoCo,
    records: list[VideoRecord],
    config: Config,
    class_names: list[str],
    progress: bool = True,
) -> dict:
    """UnAV-style results ``{"results": {vid: [{segment, label, label_id, score}]}}``."""
    device = next(model.parameters()).device
    graph = WindowGraph(model).to(device).eval()

    def run_window(visual: np.ndarray, audio: np.ndarray, mask: np.ndarray):
        with torch.no_grad():
            inputs = (torch.from_numpy(x).to(device) for x in (visual, audio, mask))
            scores, segments = graph(*inputs)
        return scores.cpu().numpy(), segments.cpu().numpy()

    positions, _ = point_grid(config.model.window, config.model.num_levels)  # (N,) steps
    results = {}
    for record in tqdm(records, desc="detect", disable=not progress, leave=False):
        visual, audio = load_features(
            config.data.feature_dir, record.video_id, config.data, config.model
        )
        found = detect_features(
            run_window, visual, audio, config.model.window, positions, config.decode
        )
        duration = record.duration if record.duration > 0 else None
        found = steps_to_seconds(found, config.data.step_seconds, config.data.step_offset, duration)
        results[record.video_id] = [
            {
                "segment": [round(float(s), 3), round(float(e), 3)],
                "label": class_names[int(k)] if int(k) < len(class_names) else str(int(k)),
                "label_id": int(k),
                "score": round(float(p), 5),
            }
            for s, e, k, p in zip(found.start, found.end, found.label, found.score, strict=True)
        ]
    return {"results": results}


def evaluate_split(
    model: LoCo, config: Config, class_names: list[str], split: str, progress: bool = True
) -> tuple[EvaluationResult, dict]:
    """Detect over one split and score it with the reference protocol."""
    records, _ = load_records(config.data.annotations, split, config.model.num_classes)
    records, report = usable_records(records, config.data, split)
    if report:
        print(f"evaluate: warning: {report}", file=sys.stderr, flush=True)
    predictions = predict(model, records, config, class_names, progress)
    ground_truth = load_ground_truth(config.data.annotations, split)
    scored = {record.video_id for record in records}  # videos without features are not scored
    ground_truth = {vid: events for vid, events in ground_truth.items() if vid in scored}
    return evaluate(ground_truth, load_predictions(predictions)), predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__)
    parser.add_argument("--config", help="YAML config (defaults to the checkpoint's own)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", help="split to score (default: data.test_split)")
    parser.add_argument("--output", help="where to write the results JSON")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args(argv)
    try:
        model, stored, names = load_model(args.checkpoint)
        if args.config:
            config = load_config(args.config, args.overrides)
        else:  # the checkpoint's own config, with the overrides on top
            config = config_from_dict(apply_overrides(stored.to_dict(), args.overrides))
        if args.config and config.model != stored.model:
            raise ConfigError("--config's model section differs from the checkpoint's; drop it")
        split = args.split or config.data.test_split
        result, predictions = evaluate_split(model, config, names, split)
    except (ConfigError, CheckpointError, DataError, ValueError) as error:
        print(f"train.evaluate: error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output or Path(args.checkpoint).with_name(f"results_{split}.json"))
    output.write_text(json.dumps(predictions))
    print(f"results written to {output}")
    table = "  ".join(f"{t:.1f}:{m:5.2f}" for t, m in zip(result.tious, result.mAP, strict=True))
    print(f"mAP@tIoU {table}  average {result.average:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
