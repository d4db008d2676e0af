"""A planted feature data set: known signals at known segments, in UnAV-100's file layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STEP_SECONDS = 0.25
STEP_OFFSET = 0.125
VISUAL_DIM = 16
AUDIO_DIM = 8
NUM_CLASSES = 4


def make_planted_dataset(
    root: Path, videos_per_split: dict[str, int], seed: int = 0, length: tuple[int, int] = (40, 64)
) -> Path:
    """Write ``root/annotations.json`` and ``root/features/<vid>_{visual,audio}.npy``.

    Events are disjoint; inside an event of class c both modalities carry +2 on channel c (over
    N(0, 0.3) noise), so a detector can find the class and both boundaries exactly. Returns the
    annotation path.
    """
    rng = np.random.default_rng(seed)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    database = {}
    for split, count in videos_per_split.items():
        for index in range(count):
            video_id = f"{split}_{index:04d}"
            steps = int(rng.integers(*length))
            visual = rng.normal(0, 0.3, (steps, VISUAL_DIM)).astype(np.float32)
            audio = rng.normal(0, 0.3, (steps, AUDIO_DIM)).astype(np.float32)
            events = []
            cursor = int(rng.integers(0, 6))
            while cursor < steps - 4 and len(events) < 3:  # disjoint events, gaps >= 2 steps
                size = int(rng.integers(3, min(24, steps - cursor)))
                label = int(rng.integers(0, NUM_CLASSES))
                visual[cursor : cursor + size, label] += 2.0
                audio[cursor : cursor + size, label] += 2.0
                start = cursor * STEP_SECONDS
                events.append(
                    {
                        "segment": [start, start + size * STEP_SECONDS],
                        "label": f"class {label}",
                        "label_id": label,
                    }
                )
                cursor += size + int(rng.integers(2, 12))
            np.save(features / f"{video_id}_visual.npy", visual)
            np.save(features / f"{video_id}_audio.npy", audio)
            database[video_id] = {
                "subset": split,
                "duration": steps * STEP_SECONDS,
                "annotations": events,
            }
    path = root / "annotations.json"
    path.write_text(json.dumps({"database": database}))
    return path


def planted_config_overrides(root: Path, annotations: Path) -> list[str]:
    """Overrides that point a small config at the planted data set."""
    return [
        f"data.annotations={annotations}",
        f"data.feature_dir={root / 'features'}",
        "data.visual_files=['{vid}_visual.npy']",
        "data.audio_files=['{vid}_audio.npy']",
        f"data.step_seconds={STEP_SECONDS}",
        f"data.step_offset={STEP_OFFSET}",
        f"model.visual_dim={VISUAL_DIM}",
        f"model.audio_dim={AUDIO_DIM}",
        f"model.num_classes={NUM_CLASSES}",
        f"train.output_dir={root / 'run'}",
    ]
