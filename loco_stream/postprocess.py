"""Host-side decoding of a window's outputs: threshold, top-k, per-class Gaussian soft-NMS.

Runs in numpy (no torch): the runtime, ``loco-detect``, the stream and ``train.evaluate`` share it.
Segments are in *steps* of the window until ``steps_to_seconds`` maps them to time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DecodeConfig


@dataclass
class Segments:
    """A set of scored segments; all arrays have shape (K,)."""

    start: np.ndarray  # float
    end: np.ndarray  # float
    label: np.ndarray  # int
    score: np.ndarray  # float
    peak: np.ndarray  # float: the point (step) whose score it is, where the model was surest

    FIELDS = ("start", "end", "label", "score", "peak")

    @classmethod
    def empty(cls) -> Segments:
        nothing = np.zeros(0)
        return cls(nothing, nothing, np.zeros(0, dtype=np.int64), nothing, nothing)

    def __len__(self) -> int:
        return len(self.score)

    def take(self, index: np.ndarray) -> Segments:
        return Segments(*(getattr(self, field)[index] for field in self.FIELDS))

    def shift(self, steps: float) -> Segments:
        """The same segments (and peaks) ``steps`` later: a window's steps -> its clip's."""
        moved = [self.start + steps, self.end + steps, self.label, self.score, self.peak + steps]
        return Segments(*moved)

    @classmethod
    def concat(cls, parts: list[Segments]) -> Segments:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in cls.FIELDS))


def point_grid(length: int, num_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in steps) and strides of every point of a T-step window, both (N,) float32:
    level ``l`` (stride ``2^l``) has a point at every ``2^l``-th step, levels concatenated."""
    positions, strides = [], []
    for level in range(num_levels):
        stride = 2**level
        count = length // stride
        positions.append(np.arange(count, dtype=np.float32) * stride)
        strides.append(np.full(count, float(stride), np.float32))
    return np.concatenate(positions), np.concatenate(strides)


def candidates(
    scores: np.ndarray, segments: np.ndarray, positions: np.ndarray, config: DecodeConfig
) -> Segments:
    """Threshold and top-k over one window's points x classes.

    scores (N, C); segments (N, 2) class-agnostic or (N, C, 2) class-aware, in steps; positions
    (N,): the step of each point (its peak, when it scores a candidate).
    """
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)  # (N * C,)
    keep = np.flatnonzero(flat > config.score_threshold)
    if len(keep) > config.pre_nms_topk:
        keep = keep[np.argpartition(-flat[keep], config.pre_nms_topk - 1)[: config.pre_nms_topk]]
    point, label = np.divmod(keep, num_classes)
    bounds = segments[point] if segments.ndim == 2 else segments[point, label]  # (K, 2)
    long_enough = bounds[:, 1] - bounds[:, 0] >= config.min_duration
    return Segments(
        bounds[long_enough, 0].astype(np.float64),
        bounds[long_enough, 1].astype(np.float64),
        label[long_enough].astype(np.int64),
        flat[keep][long_enough].astype(np.float64),
        positions[point][long_enough].astype(np.float64),
    )


def temporal_iou(start, end, starts, ends) -> np.ndarray:
    """Temporal IoU of segments ``[start, end]`` and ``[starts, ends]``, broadcast (one against
    many: (K,); pairs: (N, 1) against (K,) gives (N, K)); 0 where the union is empty or undefined
    (a zero-length pair, NaN padding). The project's one definition: decoding, stitching, the
    evaluator and the benchmarks all use it."""
    intersection = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0.0, None)
    union = (end - start) + (ends - starts) - intersection
    out = np.zeros(np.broadcast(intersection, union).shape, np.result_type(intersection, union))
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def soft_nms(segments: Segments, sigma: float, min_score: float, max_segments: int) -> Segments:
    """Per-class Gaussian soft-NMS: each kept segment decays the scores of its class's others by
    ``exp(-tIoU^2 / sigma)``; segments decayed below ``min_score`` are dropped. Returns at most
    ``max_segments``, best first."""
    kept: list[Segments] = []
    for label in np.unique(segments.label):
        group = segments.take(np.flatnonzero(segments.label == label))
        left = np.arange(len(group))  # indices into group not yet picked nor dropped
        score = group.score.copy()  # (len(left),) their decayed scores
        picked, picked_score = [], []
        while len(left):
            best = int(np.argmax(score))
            picked.append(left[best])
            picked_score.append(score[best])
            start, end = group.start[left[best]], group.end[left[best]]
            iou = temporal_iou(start, end, group.start[left], group.end[left])
            score = score * np.exp(-(iou**2) / sigma)
            alive = (score >= min_score) & (np.arange(len(score)) != best)
            left, score = left[alive], score[alive]
        chosen = group.take(np.array(picked, dtype=np.int64))
        chosen.score = np.array(picked_score, dtype=np.float64)
        kept.append(chosen)
    merged = Segments.concat(kept)
    order = np.argsort(-merged.score, kind="stable")[:max_segments]
    return merged.take(order)


def decode(
    scores: np.ndarray, segments: np.ndarray, positions: np.ndarray, config: DecodeConfig
) -> Segments:
    """One window's graph outputs -> final segments in steps (threshold, top-k, soft-NMS, cap)."""
    return soft_nms(
        candidates(scores, segments, positions, config),
        config.nms_sigma,
        config.score_threshold,
        config.max_segments,
    )


def steps_to_seconds(
    segments: Segments, step_seconds: float, step_offset: float, duration: float | None = None
) -> Segments:
    """Map step coordinates (step i centred at ``step_offset + i * step_seconds``) to seconds,
    clipped to ``[0, duration]`` when the duration is known."""
    upper = np.inf if duration is None else duration
    start, end, peak = (
        np.clip(step_offset + steps * step_seconds, 0.0, upper)
        for steps in (segments.start, segments.end, segments.peak)
    )
    return Segments(start, end, segments.label, segments.score, peak)
