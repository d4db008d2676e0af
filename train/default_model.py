"""Build the shipped default model from nothing, in one command (about an hour on 2 cores).

    python -m train.default_model [--workdir data/synth] [--out loco_stream/assets/default_model]

1. render the synthetic benchmark (train / validation / test) with ``loco-synth``'s generator;
2. train the audio and visual extractors and export them (``train.extractors``);
3. extract features for every clip with those exported graphs (``train.extract_features``);
4. train LoCo (``configs/edge.yaml``), keeping the best checkpoint on the validation split;
5. store its EMA weights in fp16 (``loco.pt``) and score those on the test split with the
   reference evaluator;
6. export the model directory from the same weights with ``python -m export``'s code (every
   graph checked against torch and for TensorRT readiness, the model card with the test scores).

Stages whose output already exists are skipped, so an interrupted build resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from export.__main__ import export_model_dir, load_job
from loco_stream.bundle import DEFAULT_MODEL_DIR, EXTRACTOR_CHECKPOINT, WINDOW_CHECKPOINT
from loco_stream.config import load_config
from loco_stream.synth import generate_dataset

from .checkpoint import half_precision, load_checkpoint, load_model, save_checkpoint
from .evaluate import evaluate_split
from .extract_features import Extractors, extract_folder
from .extractors import train_extractors
from .loop import train

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"train": 1, "validation": 2, "test": 3}  # split -> generator seed


def render(workdir: Path, counts: dict[str, int]) -> int:
    """Render the clips each split still lacks; returns how many were rendered."""
    rendered = 0
    annotations = workdir / "annotations.json"
    existing = json.loads(annotations.read_text())["database"] if annotations.exists() else {}
    for split, count in counts.items():
        have = sum(1 for entry in existing.values() if entry["subset"] == split)
        if have >= count:
            print(f"[1/6] {split}: {have} clips already rendered")
            continue
        print(f"[1/6] rendering {count - have} {split} clips")
        generate_dataset(
            workdir, count - have, SPLITS[split], split, workers=2, progress=True, first=have
        )
        rendered += count - have
    return rendered


def ship_weights(best: Path, out_dir: Path) -> Path:
    """``loco.pt``: the EMA weights in fp16 (loaded back into fp32), config and class names only."""
    state = load_checkpoint(best)
    shipped = {
        "model": half_precision(state["ema"]),
        "config": state["config"],
        "class_names": state["class_names"],
        "epoch": state["epoch"],
    }
    save_checkpoint(out_dir / WINDOW_CHECKPOINT, shipped)
    return out_dir / WINDOW_CHECKPOINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.default_model", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "synth")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "edge.yaml")
    parser.add_argument("--train-videos", type=int, default=1200)
    parser.add_argument("--val-videos", type=int, default=40)
    parser.add_argument("--test-videos", type=int, default=60)
    parser.add_argument("--extractor-clips", type=int, default=120)
    parser.add_argument("--extractor-epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="section.key=value for the LoCo config")
    args = parser.parse_args(argv)
    workdir, out_dir = args.workdir, args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_seconds: dict[str, int] = {}  # the stages this call ran -> their wall time
    clock = time.perf_counter()

    def timed(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stage_seconds[stage] = round(now - clock)
        clock = now

    counts = {"train": args.train_videos, "validation": args.val_videos, "test": args.test_videos}
    if render(workdir, counts):
        timed("render")

    if (out_dir / EXTRACTOR_CHECKPOINT).exists():
        print("[2/6] extractors already trained")
    else:
        print("[2/6] training the extractors")
        report = train_extractors(workdir, out_dir, 16, args.extractor_clips, args.extractor_epochs)
        print(json.dumps(report))
        timed("extractors")

    features = workdir / "features"
    videos = sorted((workdir / "videos").glob("*.mp4"))
    todo = [v for v in videos if not (features / f"{v.stem}_audio.npy").exists()]
    print(f"[3/6] extracting features of {len(todo)} clips ({len(videos) - len(todo)} done)")
    failures = extract_folder(todo, features, Extractors(str(out_dir), is_set=False), workers=2)
    if failures:
        print(f"feature extraction failed for {len(failures)} clips: {failures}", file=sys.stderr)
        return 1
    if todo:
        timed("features")

    overrides = [
        f"data.annotations={workdir / 'annotations.json'}",
        f"data.feature_dir={features}",
        *args.overrides,
    ]
    config = load_config(args.config, overrides)
    best = Path(config.train.output_dir) / "best.pt"
    if best.exists():
        print(f"[4/6] LoCo already trained: {best}")
    else:
        print("[4/6] training LoCo")
        best = train(config)
        timed("loco")

    shipped = ship_weights(best, out_dir)  # what ships is scored and exported: fp16 weights
    model, config, names = load_model(shipped)
    result, _ = evaluate_split(model, config, names, config.data.test_split)
    print(f"[5/6] test avg mAP {result.average:.2f}  mAP {[round(m, 2) for m in result.mAP]}")

    timed("score")
    results = {
        "test_average_mAP": round(result.average, 2),
        "test_mAP": dict(
            zip([f"{t:.1f}" for t in result.tious], [round(m, 2) for m in result.mAP], strict=True)
        ),
        "clips": {
            "train": args.train_videos,
            "validation": args.val_videos,
            "test": args.test_videos,
        },
        "epochs": config.train.epochs,
        "stage_seconds": stage_seconds,  # stages skipped by this call (output found) are absent
        "command": "python -m train.default_model",
    }
    print("[6/6] exporting the model directory")
    export_model_dir(load_job(shipped, out_dir, results=results))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
