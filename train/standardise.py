"""Measure the per-dimension mean and scale of the training split's features.

The numbers become ``model.feature_stats`` (``loco_stream/model/standardise.py`` applies them
inside the network, hence inside every exported graph). Measured over every step of every train
clip, in float64; a dimension that never varies gets scale 1 (it stays constant, not huge), and
one that barely varies at least ``RELATIVE_FLOOR`` of the median dimension's scale.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from loco_stream.config import DataConfig, ModelConfig
from loco_stream.model.standardise import MIN_SCALE

from .data import VideoRecord, load_features

# A dimension that barely varies in training (a ReLU unit almost always off) is divided by at
# least this share of the median dimension's std: a rare value in a new video then stays within a
# factor 100 of a typical one (and within fp16's range in a half-precision graph).
RELATIVE_FLOOR = 0.01


class RunningMoments:
    """Per-dimension count, sum and sum of squares over rows added in chunks."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.total = np.zeros(dim, dtype=np.float64)
        self.squares = np.zeros(dim, dtype=np.float64)

    def add(self, rows: np.ndarray) -> None:  # rows (T, D)
        rows = rows.astype(np.float64)
        self.count += len(rows)
        self.total += rows.sum(axis=0)
        self.squares += (rows**2).sum(axis=0)

    def mean_and_scale(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / max(self.count, 1)
        variance = np.maximum(self.squares / max(self.count, 1) - mean**2, 0.0)
        std = np.sqrt(variance)
        varying = std[std >= MIN_SCALE]
        floor = RELATIVE_FLOOR * np.median(varying) if len(varying) else MIN_SCALE
        return mean, np.where(std < MIN_SCALE, 1.0, np.maximum(std, floor))


def measure_feature_stats(
    records: list[VideoRecord], data: DataConfig, model: ModelConfig, progress: bool = True
) -> dict:
    """``model.feature_stats`` of the clips in ``records``: {modality: {"mean", "scale"}}."""
    moments = {"visual": RunningMoments(model.visual_dim), "audio": RunningMoments(model.audio_dim)}
    for record in tqdm(records, desc="feature statistics", disable=not progress, leave=False):
        visual, audio = load_features(data.feature_dir, record.video_id, data, model)
        moments["visual"].add(visual)
        moments["audio"].add(audio)
    stats = {}
    for modality, moment in moments.items():
        mean, scale = moment.mean_and_scale()
        stats[modality] = {
            "mean": [float(f"{v:.6g}") for v in mean],
            "scale": [float(f"{v:.6g}") for v in scale],
        }
    return stats
