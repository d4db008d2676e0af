"""Checkpoints for training: the package's own reader and writer (``loco_stream.model.checkpoint``).

Training, evaluation and the default-model build import them from here; the runtime and the
export read checkpoints through the package, which does not depend on ``train/``.
"""

from loco_stream.model.checkpoint import (
    CheckpointError,
    half_precision,
    load_checkpoint,
    load_extractors,
    load_model,
    save_checkpoint,
    save_extractors,
)

__all__ = [
    "CheckpointError",
    "half_precision",
    "load_checkpoint",
    "load_extractors",
    "load_model",
    "save_checkpoint",
    "save_extractors",
]
