"""What each extractor set teaches LoCo: one recipe, the same clips, every set and variant.

    python benchmarks/bench_training.py --data data/held \
        --features synthetic=data/held/features efficientnet-logmel=data/held/features_eff \
        [--features efficientnet-vggish=DIR] [--variants loco audio_only visual_only] \
        [--runs runs/bench_training] [--jobs 2] [--output FILE.json]

``--data`` holds a labelled set with train, validation and test subsets (``loco-synth`` renders
one: README, "Synthetic benchmark") and ``--features`` one feature folder per extractor set, made
with ``python -m train.extract_features --extractors NAME``. Every row trains ``configs/edge.yaml``
(sized to the set's feature sizes) with the default recipe (features standardised, steps sized to
the data, early stopping, best validation checkpoint) as ``model.variant``, one torch thread a run,
``--jobs`` runs at a time, and scores the test subset with the project's evaluator. Beside each
set: the feature check (a linear probe per modality, ``train/feature_check.py``). A finished run
(its ``result.json``) is reused. ``efficientnet-vggish`` needs VGGish's weights, which cannot be
downloaded here: without its feature folder its rows say so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.config import Config, load_config  # noqa: E402
from train.checkpoint import load_checkpoint, load_model  # noqa: E402
from train.evaluate import evaluate_split  # noqa: E402
from train.extractor_sets import SETS  # noqa: E402
from train.feature_check import check_features  # noqa: E402
from train.loop import train  # noqa: E402

CONFIG = ROOT / "configs" / "edge.yaml"
VARIANTS = ("loco", "audio_only", "visual_only")


def set_config(name: str, data: Path, features: Path, run: Path, variant: str) -> Config:
    """``configs/edge.yaml`` on the set's feature files (sizes read from one file)."""
    visual_name, audio_name = SETS[name].feature_names()
    visual_file = next(features.glob(f"*_{visual_name}.npy"))
    audio_file = visual_file.with_name(visual_file.name.replace(visual_name, audio_name))
    dims = np.load(visual_file, mmap_mode="r").shape[1], np.load(audio_file, mmap_mode="r").shape[1]
    return load_config(
        CONFIG,
        [
            f"model.variant={variant}",
            f"model.visual_dim={dims[0]}",
            f"model.audio_dim={dims[1]}",
            f"data.annotations={data / 'annotations.json'}",
            f"data.feature_dir={features}",
            f'data.visual_files=["{{vid}}_{visual_name}.npy"]',
            f'data.audio_files=["{{vid}}_{audio_name}.npy"]',
            f"train.output_dir={run}",
            "train.num_threads=1",
        ],
    )


def train_and_score(name: str, variant: str, data: Path, features: Path, run: Path) -> dict:
    """One row: train (or reuse) and score the test subset; the row's figures."""
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    config = set_config(name, data, features, run, variant)
    began = time.perf_counter()
    train(config, progress=False)
    return score_run(name, variant, run, time.perf_counter() - began)


def score_run(name: str, variant: str, run: Path, seconds: float) -> dict:
    """The row of a finished run folder (its best checkpoint on the test subset)."""
    best = run / "best.pt"
    model, stored, names = load_model(best)
    result, _ = evaluate_split(model, stored, names, stored.data.test_split, progress=False)
    kept = load_checkpoint(best)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    row = {
        "set": name,
        "variant": variant,
        "test_avg_mAP": round(result.average, 2),
        "test_mAP@0.5": round(result.mAP[4], 2),
        "best_step": kept["step"],
        "steps": metrics[-1]["step"],
        "stopped_early": bool(metrics[-1].get("stopped_early")),
        "best_val_mAP": round(kept["best_score"], 2),
        "train_seconds": round(seconds),
    }
    (run / "result.json").write_text(json.dumps(row, indent=1))
    return row


def probe_row(name: str, data: Path, features: Path, runs: Path) -> dict:
    """The feature check of one set: probe macro-F1 and chance per modality."""
    done = runs / name / "feature_check.json"
    if done.is_file():
        return json.loads(done.read_text())
    reports = check_features(set_config(name, data, features, runs / name, "loco"), False)
    row = {r.modality: {"probe_f1": r.probe_f1, "chance_f1": r.chance_f1} for r in reports}
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=1))
    return row


def table(rows: list[dict], probes: dict[str, dict]) -> str:
    lines = [
        f"{'set':<20} {'variant':<12} {'test avg mAP':>12} {'mAP@0.5':>8} {'best/steps':>11} "
        f"{'train s':>8}  probe F1 visual / audio (chance)"
    ]
    for row in rows:
        probe = probes.get(row["set"], {})
        checked = " / ".join(
            f"{probe[m]['probe_f1']:.2f} ({probe[m]['chance_f1']:.2f})"
            for m in ("visual", "audio")
            if m in probe
        )
        if "skipped" in row:
            lines.append(f"{row['set']:<20} {row['variant']:<12} skipped: {row['skipped']}")
            continue
        steps = f"{row['best_step']}/{row['steps']}"
        lines.append(
            f"{row['set']:<20} {row['variant']:<12} {row['test_avg_mAP']:>12.2f} "
            f"{row['test_mAP@0.5']:>8.2f} {steps:>11} {row['train_seconds']:>8}  {checked}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder with annotations.json")
    parser.add_argument(
        "--features", nargs="+", required=True, help="SET=FEATURE_DIR, one per extractor set"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_training")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--output", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    folders = dict(item.split("=", 1) for item in args.features)
    unknown = sorted(set(folders) - set(SETS))
    if unknown:
        parser.error(f"unknown extractor set(s) {unknown}; use {sorted(SETS)}")
    sets = [name for name in SETS if name in folders or name == "efficientnet-vggish"]
    probes = {
        name: probe_row(name, args.data, Path(folders[name]), args.runs)
        for name in sets
        if name in folders
    }
    jobs, rows = {}, []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name in sets:
            for variant in args.variants:
                if name not in folders:
                    reason = "no feature folder given (needs --vggish to extract: README)"
                    rows.append({"set": name, "variant": variant, "skipped": reason})
                    continue
                run = args.runs / name / variant
                features = Path(folders[name])
                jobs[(name, variant)] = pool.submit(
                    train_and_score, name, variant, args.data, features, run
                )
        rows += [job.result() for job in jobs.values()]
    rows.sort(key=lambda r: (list(SETS).index(r["set"]), VARIANTS.index(r["variant"])))
    print(table(rows, probes))
    if args.output:
        args.output.write_text(json.dumps({"rows": rows, "feature_check": probes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
