"""A small head trained on EfficientNet-Lite0's frozen stage-5 map: does it recover what the
pooled ImageNet embedding loses? (issue 23)

    python benchmarks/probe_trained_head.py [--data data/held] [--audio data/held/features_eff]
        [--maps data/stage5_maps] [--out data/held/features_head] [--epochs 6] [--threads 2]

1. Each step's frame, as the ``efficientnet-logmel`` set sees it (the step's middle, 224x224),
   goes through EfficientNet-Lite0 (ImageNet weights, frozen) up to the end of stage 5 (blocks
   0-10); that output, (T, 112, 14, 14) a clip, is cached in float16 under ``--maps``.
2. A head (``loco_stream/features/map_head.py``'s ``MapHead``: 1x1 conv 112 -> 128 and 3x3 conv
   128 -> 128, each with BatchNorm and ReLU, a max pool over the 14 x 14 places, a linear
   128 -> 128 with ReLU: the embedding) and a linear classifier over the 16 classes learn, from
   the train split only, which classes are on screen in each step (the annotations' ``visible``
   list, heard or not), at a constant learning rate (``loco-train``'s extractor stage trains the
   same head with a one-cycle schedule: ``train/map_head.py``).
3. The embedding of every step of every clip is written as ``ID_efficientnet.npy`` (T, 128)
   under ``--out``, beside a link to the clip's ``ID_logmel.npy`` in ``--audio``: a folder
   that ``benchmarks/bench_training.py`` reads as the ``efficientnet-logmel`` set:

    python benchmarks/bench_training.py --data data/held --runs runs/bench_training_head \\
        --features efficientnet-logmel=data/held/features_head

Prints the feature check's probe (train -> validation, event class or background) of the stage-5
map's plain pools and of the trained head's embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.features.efficientnet_lite import pretrained_efficientnet_lite0  # noqa: E402
from loco_stream.features.map_head import (  # noqa: E402
    HEAD_DIM,
    MapHead,
    untrained_visual_map_head,
)
from loco_stream.features.networks import PresenceClassifier  # noqa: E402
from train import map_head as head_stage  # noqa: E402
from train.data import VideoRecord, load_records  # noqa: E402
from train.extractor_sets import SETS  # noqa: E402
from train.feature_check import check_modality, step_labels  # noqa: E402

NUM_CLASSES = 16
BATCH = 128  # steps per optimiser step
EVERY_STEP = 10**9  # no clip is subsampled
SPLITS = ("train", "validation", "test")


def clip_maps(record: VideoRecord, data: Path, cache: Path, spec, visual) -> np.ndarray:
    """(T, 112, 14, 14) float16 stage-5 maps of every step of one clip, as loco-train's extractor
    stage computes them (``train/map_head.py``, cached under ``cache``)."""
    video = data / "videos" / f"{record.video_id}.mp4"
    _, maps = head_stage.clip_maps(visual, video, spec, cache, limit=EVERY_STEP)
    return maps[:, 0]  # one frame a step


def on_screen(video: dict, steps: int, step_seconds: float) -> np.ndarray:
    """(T, 16) 1 where a class's shape is on screen at the step's centre (heard or not)."""
    centres = step_seconds * (np.arange(steps) + 0.5)
    shown = np.zeros((steps, NUM_CLASSES), np.float32)
    for event in video.get("visible", []):
        start, end = event["segment"]
        shown[(centres >= start) & (centres <= end), event["label_id"]] = 1.0
    return shown


def train_head(maps: np.ndarray, shown: np.ndarray, epochs: int, seed: int) -> MapHead:
    """Fit the head (the EfficientNet sets' ``MapHead``) with a linear classifier to
    (S, 112, 14, 14) maps and (S, 16) on-screen targets, at a constant learning rate."""
    torch.manual_seed(seed)
    head = PresenceClassifier(MapHead(), HEAD_DIM, NUM_CLASSES)
    optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    targets = torch.from_numpy(shown)
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(maps))
        total = 0.0
        batches = tqdm(range(0, len(maps), BATCH), desc=f"head epoch {epoch + 1}", leave=False)
        for start in batches:
            chosen = np.sort(order[start : start + BATCH].numpy())  # sorted: faster gathers
            logits = head(torch.from_numpy(maps[chosen])[:, None])  # one frame a step
            loss = functional.binary_cross_entropy_with_logits(logits, targets[chosen])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(chosen)
        print(f"head epoch {epoch + 1}/{epochs}: loss {total / len(maps):.4f}", flush=True)
    return head.encoder.eval()


@torch.no_grad()
def embed(head: MapHead, maps: np.ndarray) -> np.ndarray:
    """(T, 112, 14, 14) -> (T, 128) float32."""
    parts = [head(torch.from_numpy(maps[i : i + 256])[:, None]) for i in range(0, len(maps), 256)]
    return torch.cat(parts).numpy()


def probe(name: str, train: tuple, held_out: tuple, seed: int) -> str:
    """The feature check's probe on (features, labels) pairs: one line."""
    report = check_modality(
        name,
        {name: train[0], "label": train[1]},
        {name: held_out[0], "label": held_out[1]},
        seed,
    )
    return f"| {name} | {report.dims} | {report.probe_f1:.2f} | {report.chance_f1:.2f} |"


def pooled(maps: np.ndarray) -> np.ndarray:
    """(T, 112, 14, 14) -> (T, 224): average and max pools, the head's untrained counterpart."""
    x = maps.astype(np.float32)
    return np.concatenate([x.mean(axis=(2, 3)), x.max(axis=(2, 3))], axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "held")
    parser.add_argument("--audio", type=Path, default=ROOT / "data" / "held" / "features_eff")
    parser.add_argument("--maps", type=Path, default=ROOT / "data" / "stage5_maps")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "held" / "features_head")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.maps.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    spec = SETS["efficientnet-logmel"].spec()  # 1 frame of 224x224 at the step's middle
    annotations = args.data / "annotations.json"
    database = json.loads(annotations.read_text())["database"]
    records = {split: load_records(annotations, split, NUM_CLASSES)[0] for split in SPLITS}
    visual = untrained_visual_map_head(pretrained_efficientnet_lite0())  # its trunk makes maps

    began = time.perf_counter()
    maps = {
        split: [
            clip_maps(record, args.data, args.maps, spec, visual)
            for record in tqdm(chosen, desc=f"{split} maps", unit="clip")
        ]
        for split, chosen in records.items()
    }
    extracted = time.perf_counter() - began

    def labels(split: str) -> np.ndarray:
        return np.concatenate(
            [
                step_labels(record, len(m), spec.step_seconds, spec.step_seconds / 2)
                for record, m in zip(records[split], maps[split], strict=True)
            ]
        )

    shown = np.concatenate(
        [
            on_screen(database[record.video_id], len(m), spec.step_seconds)
            for record, m in zip(records["train"], maps["train"], strict=True)
        ]
    )
    began = time.perf_counter()
    head = train_head(np.concatenate(maps["train"]), shown, args.epochs, args.seed)
    trained = time.perf_counter() - began

    embeddings = {split: [embed(head, clip) for clip in maps[split]] for split in SPLITS}
    for split in SPLITS:
        for record, embedding in zip(records[split], embeddings[split], strict=True):
            np.save(args.out / f"{record.video_id}_efficientnet.npy", embedding)
            audio = args.out / f"{record.video_id}_logmel.npy"
            if not audio.exists():
                os.symlink((args.audio / audio.name).resolve(), audio)

    train_labels, val_labels = labels("train"), labels("validation")
    rows = [
        probe(
            "stage-5 map, average + max pool (untrained)",
            (np.concatenate([pooled(m) for m in maps["train"]]), train_labels),
            (np.concatenate([pooled(m) for m in maps["validation"]]), val_labels),
            args.seed,
        ),
        probe(
            "stage-5 map, the trained head's embedding",
            (np.concatenate(embeddings["train"]), train_labels),
            (np.concatenate(embeddings["validation"]), val_labels),
            args.seed,
        ),
    ]
    counts = ", ".join(f"{len(records[s])} {s}" for s in SPLITS)
    print(
        f"\n{counts} clips; maps {extracted:.0f} s (0 when cached), head {trained:.0f} s "
        f"({args.epochs} epochs), {args.threads} torch threads; embeddings under {args.out}\n"
    )
    print("| visual features | dims | probe macro-F1 (validation) | chance |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
