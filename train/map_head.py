"""Train the pretrained sets' visual head (``loco_stream/features/map_head.py``) on labelled clips.

``loco-train --extractors efficientnet-logmel`` (and ``efficientnet-vggish``) runs this in its
extractor stage. The frozen trunk (EfficientNet-Lite0 to stage 5) sees every step of each labelled
clip once, cut by the stream's step assembly; its maps (float16, 44 KB a frame at 224 x 224) are
cached per clip so an interrupted stage resumes, and removed once the head is trained. The head
and a linear classifier then learn which classes each step shows (the ``visible`` intervals the
synthetic generator records, or a user's annotated events), as the trainable CNNs learn
(``train/extractors.py``); background clips are negatives for every class. Where the clips hold
more than 48,000 steps in all (long videos), each gives an even share of its steps, spread over
it. The recipe is the one measured in docs/training.md ("A head trained on the frozen stage-5
map"): 6 epochs, AdamW 1e-3, weight decay 1e-2, batches of 128 steps, and more epochs where a
small set makes fewer than 600 optimiser steps.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from loco_stream.features.map_head import VisualMapHead
from loco_stream.features.media import MediaError, file_steps
from loco_stream.features.networks import PresenceClassifier
from loco_stream.features.steps import StepSpec

from .extractors import LabelledClip, fit, presence_accuracy, step_presence

HEAD_EPOCHS = 6
MIN_HEAD_UPDATES = 600  # optimiser steps at least, however few the clips (240 clips: 1,800)
HEAD_BATCH = 128
HEAD_LR = 1e-3
HEAD_WEIGHT_DECAY = 1e-2
STEPS_PER_PASS = 32  # steps through the trunk at once
MAX_HEAD_STEPS = 48_000  # steps learnt from at most (2 GB of maps at 224x224): long clips share


@dataclass(frozen=True)
class HeadTraining:
    """What the visual head learns from: labelled clips, and where their maps are cached."""

    train_clips: list[LabelledClip]
    held_out_clips: list[LabelledClip]
    num_classes: int
    cache: Path
    epochs: int = HEAD_EPOCHS  # more when these make fewer than ``min_updates`` steps
    min_updates: int = MIN_HEAD_UPDATES
    seed: int = 0


@torch.no_grad()
def clip_maps(
    visual: VisualMapHead, video: Path, spec: StepSpec, cache: Path, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """A clip's steps that the head learns from, at most ``limit`` evenly spread over it (K,),
    and their (K, F, 112, h, w) float16 stage-5 maps (cached under ``cache``)."""
    key = hashlib.sha1(f"{video.resolve()}:{limit}".encode()).hexdigest()[:16]
    cached = cache / f"{video.stem}-{key}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            return stored["steps"], stored["maps"]
    steps = list(file_steps(video, spec))
    if not steps:
        raise MediaError(f"{video} is shorter than one step")
    chosen = np.unique(np.linspace(0, len(steps) - 1, min(limit, len(steps))).round().astype(int))
    frames = np.stack([steps[i].frames for i in chosen])  # (K, F, H, W, 3) uint8
    maps = np.concatenate(
        [
            visual.maps(torch.from_numpy(frames[start : start + STEPS_PER_PASS])).half().numpy()
            for start in range(0, len(frames), STEPS_PER_PASS)
        ]
    )
    temporary = cached.with_suffix(".tmp")
    with temporary.open("wb") as file:
        np.savez(file, steps=chosen, maps=maps)
    temporary.replace(cached)
    return chosen, maps


def labelled_maps(
    visual: VisualMapHead, clips: list[LabelledClip], spec: StepSpec, training: HeadTraining, desc
) -> tuple[np.ndarray, np.ndarray]:
    """The clips' maps (S, F, 112, h, w) float16 and which classes each step shows (S, C); a
    long clip gives an even share of its steps, so that the maps fit in memory."""
    limit = max(1, MAX_HEAD_STEPS // max(1, len(clips)))
    maps, shown = [], []
    for clip in tqdm(clips, desc=f"stage-5 maps, {desc}", unit="clip"):
        try:
            chosen, clip_map = clip_maps(visual, clip.video, spec, training.cache, limit)
        except MediaError as error:
            print(f"skipped {clip.video.name}: {error}", file=sys.stderr)
            continue
        presence = step_presence(
            clip.visible, int(chosen[-1]) + 1, spec.step_seconds, training.num_classes
        )
        maps.append(clip_map)
        shown.append(presence[chosen])
    if not maps:
        raise MediaError(f"none of the {len(clips)} {desc} clips could be decoded")
    return np.concatenate(maps), np.concatenate(shown)


def train_visual_head(visual: VisualMapHead, spec: StepSpec, training: HeadTraining) -> dict:
    """Fit ``visual``'s head in place; returns its step presence accuracy on held-out clips."""
    torch.manual_seed(training.seed)
    training.cache.mkdir(parents=True, exist_ok=True)
    train_maps, train_shown = labelled_maps(visual, training.train_clips, spec, training, "train")
    held_maps, held_shown = labelled_maps(
        visual, training.held_out_clips, spec, training, "held-out"
    )
    batches = -(-len(train_maps) // HEAD_BATCH)
    epochs = max(training.epochs, -(-training.min_updates // batches))
    print(
        f"visual head: {len(train_maps)} training steps, {len(held_maps)} held-out steps, "
        f"{epochs} epochs of {batches} batches"
    )
    dim = visual.head.embed[0].out_features
    classifier = PresenceClassifier(visual.head, dim, training.num_classes)
    fit(
        classifier,
        train_maps,
        train_shown,
        epochs,
        HEAD_BATCH,
        "visual head",
        training.seed,
        lr=HEAD_LR,
        weight_decay=HEAD_WEIGHT_DECAY,
    )
    accuracy = presence_accuracy(classifier, held_maps, held_shown)  # fit left it in eval mode
    shutil.rmtree(training.cache)  # gigabytes for a few hundred clips; the head is what stays
    return {"visual_presence_accuracy": accuracy, "visual_head_steps": len(train_maps)}
