"""What one ``loco-train`` run works from, and the error for inputs that cannot make a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "edge.yaml"
TRAINABLE = "trainable"


class InputError(ValueError):
    """Inputs that cannot make a model; the message lists what is wrong and how to fix it."""


@dataclass
class Settings:
    """What one ``loco-train`` run works from."""

    videos: Path
    annotations: Path
    out: Path
    workdir: Path
    extractors: str = TRAINABLE
    timing: str = "default"  # a shipped set's step timing (train/extractor_sets.py, TIMINGS)
    vggish: Path | None = None  # VGGish's checkpoint and PCA file, for efficientnet-vggish
    vggish_pca: Path | None = None
    background: Path | None = None
    epochs: int | None = None
    config: Path = DEFAULT_CONFIG
    overrides: list[str] = field(default_factory=list)
    validation_share: float = 0.15
    extractor_clips: int = 200  # labelled clips the trainable extractors learn from
    extractor_epochs: int = 4
    workers: int = 2
    seed: int = 0
    command: str = "loco-train"  # what built the model, for its card
    skip_missing_videos: bool = False  # train on the annotated videos that exist (part of UnAV-100)
    check_only: bool = False  # stop after the features and their check, before training
    # a model directory whose trained extractor graphs are taken instead of training them again
    extractors_from: Path | None = None
