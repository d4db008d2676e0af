"""Train the per-step audio and visual extractors on labelled clips, then export them to ONNX.

    python -m train.extractors --synth DIR --out MODEL_DIR [--clips 120] [--epochs 4]
        [--background DIR]

Each extractor learns, from its own modality only, which classes are present in a step (the
``visible`` / ``audible`` intervals the synthetic generator records, or the annotated events of
a user's videos, which are both), as a multi-label classifier; event-free background clips are
negatives for every class; the visual one sees each training step mirrored and moved at random
(`shift_and_mirror`). The exported graph outputs the embedding before the classifier.
Steps are cut from the decoded files by the same ``StepAssembler`` the stream uses, so training
sees what serving sees.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from export.extractors import export_extractors
from loco_stream.bundle import EXTRACTOR_CHECKPOINT
from loco_stream.features.media import MediaError, file_steps
from loco_stream.features.networks import AudioEncoder, PresenceClassifier, VisualEncoder
from loco_stream.features.steps import StepSpec

from .checkpoint import load_extractors, save_extractors

DEFAULT_SPEC = StepSpec()  # the shipped model's step: 0.25 s, 16 kHz, 4 frames of 96 x 96
FEATURE_DIM = 128
PRESENT_FRACTION = 0.5  # a class is present in a step if it covers at least half of it


def step_presence(
    intervals: list[dict], num_steps: int, step: float, num_classes: int
) -> np.ndarray:
    """(num_steps, C) {0, 1}: which classes cover at least half of each step."""
    presence = np.zeros((num_steps, num_classes), dtype=np.float32)
    starts = np.arange(num_steps) * step
    for interval in intervals:
        begin, end = interval["segment"]
        covered = np.clip(np.minimum(end, starts + step) - np.maximum(begin, starts), 0, None)
        presence[covered >= PRESENT_FRACTION * step, interval["label_id"]] = 1.0
    return presence


@dataclass(frozen=True)
class LabelledClip:
    """A clip to learn step presence from: which classes each modality shows, and when."""

    video: Path
    visible: list[dict]  # [{"segment": [s, e], "label_id": k}]: seen (events are seen ...)
    audible: list[dict]  # ... and heard; an event-free background clip has neither


def annotated_clips(
    annotations: Path, videos: Path, split: str, max_clips: int
) -> list[LabelledClip]:
    """The first ``max_clips`` clips of a split of a UnAV-layout file. The synthetic generator
    records each modality's own intervals (``visible``, ``audible``); elsewhere the annotated
    events, heard and seen at once, are both."""
    database = json.loads(annotations.read_text())["database"]
    video_ids = sorted(v for v, entry in database.items() if entry["subset"] == split)[:max_clips]
    clips = []
    for video_id in video_ids:
        entry = database[video_id]
        events = entry.get("annotations", [])
        path = next(videos.glob(f"{glob.escape(video_id)}.*"), videos / f"{video_id}.mp4")
        clips.append(LabelledClip(path, entry.get("visible", events), entry.get("audible", events)))
    return clips


def background_clips(videos: list[Path]) -> list[LabelledClip]:
    """Event-free clips: every step is a negative for every class in both modalities."""
    return [LabelledClip(video, [], []) for video in videos]


def load_steps(
    clips: list[LabelledClip], spec: StepSpec, num_classes: int, desc: str
) -> dict[str, np.ndarray]:
    """Decode clips into step inputs and per-modality presence labels."""
    frames, audio, visible, audible = [], [], [], []
    for clip in tqdm(clips, desc=f"decode {desc}", leave=False):
        try:
            steps = list(file_steps(clip.video, spec))
        except MediaError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        if not steps:
            continue
        frames.append(np.stack([s.frames for s in steps]))
        audio.append(np.stack([s.audio for s in steps]))
        visible.append(step_presence(clip.visible, len(steps), spec.step_seconds, num_classes))
        audible.append(step_presence(clip.audible, len(steps), spec.step_seconds, num_classes))
    if not frames:
        raise MediaError(f"none of the {len(clips)} {desc} clips could be decoded")
    return {
        "frames": np.concatenate(frames),  # (S, F, H, W, 3) uint8
        "audio": np.concatenate(audio),  # (S, samples_per_step) float32
        "visible": np.concatenate(visible),  # (S, C)
        "audible": np.concatenate(audible),  # (S, C)
    }


def shift_and_mirror(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, F, H, W, 3) uint8 -> the same, each step mirrored left-right at random and moved by
    up to an eighth of the frame (wrapping round): where a thing is and which way it faces do
    not change what it is, and a CNN learnt from a few hundred clips otherwise memorises both."""
    batch, _, height, width, _ = frames.shape
    mirrored = torch.rand(batch, generator=generator) < 0.5
    frames = torch.where(mirrored[:, None, None, None, None], frames.flip(3), frames)
    limit = max(height, width) // 8
    moves = torch.randint(-limit, limit + 1, (batch, 2), generator=generator).tolist()
    return torch.stack(
        [step.roll(move, dims=(1, 2)) for step, move in zip(frames, moves, strict=True)]
    )


def fit(
    classifier: PresenceClassifier,
    inputs: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    batch_size: int,
    name: str,
    seed: int,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> None:
    """Multi-label BCE with AdamW and a one-cycle schedule peaking at ``lr``; ``augment``
    (batch, generator) -> batch varies each training batch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * ((len(inputs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    loss_function = nn.BCEWithLogitsLoss()
    classifier.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator).numpy()
        bar = tqdm(
            range(0, len(order), batch_size), desc=f"{name} {epoch + 1}/{epochs}", leave=False
        )
        running = 0.0
        for count, begin in enumerate(bar, start=1):
            index = np.sort(order[begin : begin + batch_size])
            batch = torch.from_numpy(inputs[index])
            logits = classifier(augment(batch, generator) if augment else batch)
            loss = loss_function(logits, torch.from_numpy(targets[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / count:.4f}")
        print(f"{name} epoch {epoch + 1}: loss {running / count:.4f}", flush=True)
    classifier.eval()


@torch.no_grad()
def presence_accuracy(
    classifier: PresenceClassifier, inputs: np.ndarray, targets: np.ndarray
) -> float:
    """Share of (step, class) decisions right at probability 0.5, on held-out steps."""
    predictions = []
    for begin in range(0, len(inputs), 256):
        predictions.append(torch.sigmoid(classifier(torch.from_numpy(inputs[begin : begin + 256]))))
    return float(((torch.cat(predictions).numpy() > 0.5) == (targets > 0.5)).mean())


def train_extractors(
    train_clips: list[LabelledClip],
    held_out_clips: list[LabelledClip],
    out_dir: Path,
    num_classes: int,
    epochs: int = 4,
    spec: StepSpec = DEFAULT_SPEC,
    seed: int = 0,
) -> dict:
    """Train both extractors, export them to ``out_dir``; returns a small report."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    train = load_steps(train_clips, spec, num_classes, "train")
    held_out = load_steps(held_out_clips, spec, num_classes, "held-out")
    print(f"{len(train['audio'])} training steps, {len(held_out['audio'])} held-out steps")
    audio = PresenceClassifier(
        AudioEncoder(spec.sample_rate, FEATURE_DIM), FEATURE_DIM, num_classes
    )
    visual = PresenceClassifier(
        VisualEncoder(spec.frames_per_step, FEATURE_DIM), FEATURE_DIM, num_classes
    )
    fit(audio, train["audio"], train["audible"], epochs, 64, "audio", seed)
    fit(
        visual,
        train["frames"],
        train["visible"],
        epochs,
        64,
        "visual",
        seed,
        augment=shift_and_mirror,
    )
    report = {
        "audio_presence_accuracy": presence_accuracy(audio, held_out["audio"], held_out["audible"]),
        "visual_presence_accuracy": presence_accuracy(
            visual, held_out["frames"], held_out["visible"]
        ),
    }
    checkpoint = out_dir / EXTRACTOR_CHECKPOINT  # fp16 on disk: the shipped model stays small
    options = {"dim": FEATURE_DIM}
    trained = {"audio": audio.encoder, "visual": visual.encoder}
    save_extractors(checkpoint, spec, trained, {"audio": options, "visual": options})
    encoders, _ = load_extractors(checkpoint)  # the graphs compute what ships: fp16 weights
    errors = export_extractors(
        encoders["audio"],
        encoders["visual"],
        spec,
        out_dir,
        audio_dim=FEATURE_DIM,
        visual_dim=FEATURE_DIM,
    )
    report["onnx_max_abs_error"] = errors
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.extractors", description=__doc__)
    parser.add_argument("--synth", type=Path, required=True, help="folder written by loco-synth")
    parser.add_argument("--background", type=Path, help="folder of event-free videos (negatives)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write into")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=16)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    annotations, videos = args.synth / "annotations.json", args.synth / "videos"
    train_clips = annotated_clips(annotations, videos, "train", args.clips)
    if args.background:
        train_clips += background_clips(sorted(args.background.glob("*.mp4")))
    held_out = annotated_clips(annotations, videos, "validation", max(args.clips // 6, 4))
    report = train_extractors(train_clips, held_out, args.out, args.num_classes, args.epochs)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
