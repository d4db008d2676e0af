"""Reference evaluator for dense audio-visual event localization (UnAV-100 protocol).

Scores detections the way the UnAV-100 benchmark does (docs/evaluation.md):

- mAP at tIoU 0.1, 0.2, ..., 0.9 and their average, all in percent;
- AP per ``label_id``, averaged over the classes present in the evaluated ground truth; predictions
  of other classes, and predictions for videos not in the ground truth, are ignored;
- same-class ground-truth duplicates (start and end within 1e-3 s) count once;
- predictions are ranked by score, descending, with a stable sort: equal scores keep their input
  order (videos in file order, then list order within a video);
- each prediction takes the not-yet-matched ground-truth event of its video and class with the
  highest tIoU (the earliest in file order on a tIoU tie) if that tIoU >= the threshold; otherwise
  it is a false positive. Classes are matched independently, so they never compete;
- AP is the all-points interpolated area under precision/recall (Pascal VOC style).

Segments are ``(start, end)`` in seconds; a zero-length segment has tIoU 0 with everything.

Input the protocol cannot score is refused with `EvaluationInputError`: a segment before 0 s
and (when a split is asked for) a ground-truth video without a ``subset``. Negative scores rank
as given (a warning: scores are probabilities). ``loco-eval`` also refuses a results file
without a single prediction.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .postprocess import temporal_iou

TIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DUPLICATE_TOLERANCE_S = 1e-3
# Slack for float representation, so that 3.201 - 3.2 still counts as "within 1e-3 s".
_FLOAT_SLACK = 1e-9

GroundTruth = dict[str, list[tuple[float, float, int]]]  # video -> [(start_s, end_s, label_id)]
Predictions = dict[str, list[tuple[float, float, int, float]]]  # video -> [(s, e, label_id, score)]


class EvaluationInputError(ValueError):
    """An annotation or prediction file that cannot be scored as written."""


@dataclass
class EvaluationResult:
    """mAP of one evaluation; every AP is in percent."""

    tious: list[float]  # the tIoU thresholds, (T,)
    mAP: list[float]  # mean AP over classes at each threshold, (T,)
    average: float  # mean of mAP over the thresholds
    class_ids: list[int]  # label_ids present in the ground truth, ascending, (C,)
    per_class_ap: np.ndarray  # (T, C), columns follow class_ids
    num_videos: int  # videos in the ground truth
    num_ignored: int  # predictions for videos outside the ground truth or classes absent from it


# ---------------------------------------------------------------------------------------------
# Reading files


def load_ground_truth(annotations: str | Path | dict, split: str | None = None) -> GroundTruth:
    """Read UnAV-100 annotations (a JSON path or the parsed dict), keeping the videos of ``split``.

    Returns ``{video_id: [(start_s, end_s, label_id), ...]}`` in file order; duplicates are kept
    (``evaluate`` merges them). ``split=None`` keeps every video.
    """
    database, name = _read_section(annotations, "database", '{"database": {video_id: {...}}}')
    if split is not None:
        subsets = {vid: _entry(database, vid, name).get("subset") for vid in database}
        unsplit = [vid for vid, subset in subsets.items() if not isinstance(subset, str)]
        if unsplit:
            raise EvaluationInputError(
                f'{name}: {len(unsplit)} video(s) have no "subset" (first: '
                f"{', '.join(map(repr, unsplit[:3]))}), so split {split!r} cannot be told; "
                'give each video "subset": "train", "validation" or "test"'
            )
        kept = [vid for vid, subset in subsets.items() if subset == split]
        if not kept:
            available = ", ".join(sorted({str(s) for s in subsets.values()})) or "none"
            raise EvaluationInputError(
                f"{name}: split {split!r} has no videos; available subsets: {available}"
            )
    else:
        kept = list(database)
        if not kept:
            raise EvaluationInputError(f'{name}: "database" has no videos')
    ground_truth: GroundTruth = {}
    for vid in kept:
        events = _entry(database, vid, name).get("annotations")
        if not isinstance(events, list):
            raise EvaluationInputError(
                f'{name}: video {vid!r}: "annotations" must be a list of events, got {events!r}'
            )
        ground_truth[vid] = [
            _parse_event(event, f"{name}: video {vid!r}, annotation {i}")[:3]
            for i, event in enumerate(events)
        ]
    return ground_truth


def load_predictions(predictions: str | Path | dict) -> Predictions:
    """Read UnAV-style results (a JSON path or the parsed dict).

    Returns ``{video_id: [(start_s, end_s, label_id, score), ...]}`` in file order; keys other than
    ``segment``, ``label_id`` and ``score`` are ignored.
    """
    results, name = _read_section(predictions, "results", '{"results": {video_id: [...]}}')
    parsed: Predictions = {}
    for vid, items in results.items():
        if not isinstance(items, list):
            raise EvaluationInputError(
                f"{name}: video {vid!r}: expected a list of predictions, got {type(items).__name__}"
            )
        parsed[vid] = [
            _parse_event(item, f"{name}: video {vid!r}, prediction {i}", with_score=True)
            for i, item in enumerate(items)
        ]
    negative = sum(row[3] < 0 for rows in parsed.values() for row in rows)
    if negative:
        warnings.warn(
            f"{name}: {negative} prediction(s) have negative scores (logits?); they are ranked "
            "as given, but UnAV-style scores are probabilities in [0, 1]",
            stacklevel=2,
        )
    return parsed


def _read_section(source: str | Path | dict, key: str, shape: str) -> tuple[dict, str]:
    """The ``key`` object of a JSON file or dict, and a name for error messages."""
    if isinstance(source, Mapping):
        data, name = source, "input"
    else:
        name = str(source)
        try:
            with open(source, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise EvaluationInputError(f"{name}: cannot read the file ({e.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvaluationInputError(f"{name}: not valid JSON ({e})") from None
    section = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(section, Mapping):
        raise EvaluationInputError(f'{name}: no "{key}" object at the top level; expected {shape}')
    return dict(section), name


def _entry(database: dict, vid: str, name: str) -> dict:
    entry = database[vid]
    if not isinstance(entry, Mapping):
        raise EvaluationInputError(
            f'{name}: video {vid!r}: expected an object with "subset" and "annotations"'
        )
    return entry


def _parse_event(item: Any, where: str, with_score: bool = False) -> tuple:
    """(start_s, end_s, label_id[, score]) of one annotation or prediction, validated."""
    if not isinstance(item, Mapping):
        raise EvaluationInputError(f'{where}: expected an object with "segment" and "label_id"')
    segment = item.get("segment")
    if not (
        isinstance(segment, (list, tuple)) and len(segment) == 2 and all(map(_is_finite, segment))
    ):
        raise EvaluationInputError(
            f'{where}: "segment" must be two finite numbers [start, end] in seconds, '
            f"got {segment!r}"
        )
    start, end = float(segment[0]), float(segment[1])
    if start < 0:
        raise EvaluationInputError(
            f"{where}: segment [{start}, {end}] starts before 0 s; times are seconds from the "
            "start of the video"
        )
    if end < start:
        raise EvaluationInputError(
            f"{where}: segment end {end} is before its start {start}; write [start, end]"
        )
    label = item.get("label_id")
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool):
        raise EvaluationInputError(
            f'{where}: "label_id" must be an integer class id, got {label!r}'
        )
    if not with_score:
        return start, end, label
    score = item.get("score")
    if not _is_finite(score):
        raise EvaluationInputError(f'{where}: "score" must be a finite number, got {score!r}')
    return start, end, label, float(score)


def _is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# Scoring


def evaluate(
    ground_truth: GroundTruth,
    predictions: Predictions,
    tious: Sequence[float] = TIOU_THRESHOLDS,
) -> EvaluationResult:
    """mAP of ``predictions`` against ``ground_truth`` at each tIoU threshold (module docstring)."""
    thresholds = np.asarray(tious, dtype=np.float64)  # (T,)
    valid = thresholds.ndim == 1 and thresholds.size > 0
    if not (valid and np.all((thresholds > 0) & (thresholds <= 1))):
        raise ValueError(f"tious must be a non-empty list of thresholds in (0, 1], got {tious!r}")

    videos = list(ground_truth)
    video_index = {vid: i for i, vid in enumerate(videos)}
    gt_video, gt = _stack({vid: _dedupe(ground_truth[vid]) for vid in videos}, video_index, 3)
    if gt_video.size == 0:
        raise EvaluationInputError("the ground truth has no events to evaluate against")
    gt_label = gt[:, 2].astype(np.int64)
    class_ids = np.unique(gt_label)  # (C,)
    gt_col = np.searchsorted(class_ids, gt_label)  # (M,) column of each event's class
    num_gt = np.bincount(gt_col, minlength=class_ids.size)  # (C,)

    known = {vid: rows for vid, rows in predictions.items() if vid in video_index}
    p_video, p = _stack(known, video_index, 4)
    p_label = p[:, 2].astype(np.int64)
    p_col = np.minimum(np.searchsorted(class_ids, p_label), class_ids.size - 1)
    scored = class_ids[p_col] == p_label
    num_ignored = sum(map(len, predictions.values())) - int(scored.sum())
    p_video, p, p_col = p_video[scored], p[scored], p_col[scored]

    # Class-major, score-descending; both sorts are stable, so ties keep input order.
    order = np.argsort(-p[:, 3], kind="stable")
    order = order[np.argsort(p_col[order], kind="stable")]
    p_video, p, p_col = p_video[order], p[order], p_col[order]

    tp = np.zeros((thresholds.size, p_col.size), dtype=bool)  # (T, N)
    num_classes = class_ids.size
    groups, gt_start, gt_end = _pad_groups(gt_video * num_classes + gt_col, gt[:, 0], gt[:, 1])
    p_key = p_video * num_classes + p_col
    p_group = np.minimum(np.searchsorted(groups, p_key), groups.size - 1)
    has_gt = groups[p_group] == p_key  # otherwise no event of its class in its video: always FP
    if has_gt.any():
        p_in = p[has_gt]
        tp[:, has_gt] = _match(
            p_group[has_gt], p_in[:, 0], p_in[:, 1], gt_start, gt_end, thresholds
        )

    bounds = np.searchsorted(p_col, np.arange(num_classes + 1))  # class c: bounds[c]:bounds[c+1]
    per_class = np.stack(
        [
            _average_precision(tp[:, bounds[c] : bounds[c + 1]], num_gt[c])
            for c in range(num_classes)
        ],
        axis=1,
    )  # (T, C), in [0, 1]
    per_class_ap = 100.0 * per_class
    mean_ap = per_class_ap.mean(axis=1)  # (T,)
    return EvaluationResult(
        tious=[float(t) for t in thresholds],
        mAP=[float(m) for m in mean_ap],
        average=float(mean_ap.mean()),
        class_ids=[int(c) for c in class_ids],
        per_class_ap=per_class_ap,
        num_videos=len(videos),
        num_ignored=num_ignored,
    )


def _dedupe(events: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Drop events whose class, start and end are within 1e-3 s of an earlier kept event."""
    tol = DUPLICATE_TOLERANCE_S + _FLOAT_SLACK
    kept: list[tuple[float, float, int]] = []
    for s, e, c in events:
        if not any(c == kc and abs(s - ks) <= tol and abs(e - ke) <= tol for ks, ke, kc in kept):
            kept.append((s, e, c))
    return kept


def _stack(rows: dict[str, list[tuple]], video_index: dict[str, int], width: int):
    """Flatten ``{video: [row, ...]}`` into video indices (N,) int64 and rows (N, width) float64."""
    counts = [len(r) for r in rows.values()]
    video = np.repeat(np.array([video_index[v] for v in rows], dtype=np.int64), counts)
    flat = [row for r in rows.values() for row in r]
    return video, np.array(flat, dtype=np.float64).reshape(len(flat), width)


def _pad_groups(key: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Ground truth grouped by (video, class) key: keys (G,), start and end (G, K) NaN-padded.

    Events keep file order inside a group (stable sort), which breaks tIoU ties in matching.
    """
    order = np.argsort(key, kind="stable")
    groups, first, inverse, counts = np.unique(
        key[order], return_index=True, return_inverse=True, return_counts=True
    )
    slot = np.arange(order.size) - first[inverse]  # position inside the group
    padded_start = np.full((groups.size, counts.max()), np.nan)
    padded_end = np.full_like(padded_start, np.nan)
    padded_start[inverse, slot] = start[order]
    padded_end[inverse, slot] = end[order]
    return groups, padded_start, padded_end


def _match(
    group: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Greedy matching of predictions (N,), given in score order, to padded ground truth (G, K).

    Matching is sequential only inside a (video, class) group, so step k handles the k-th
    prediction of every group at once, for all T thresholds. Returns true positives (T, N) bool.
    """
    n = group.size
    by_group = np.argsort(group, kind="stable")
    rank = np.empty(n, dtype=np.int64)  # (N,) position of each prediction inside its group
    rank[by_group] = np.arange(n) - np.searchsorted(group[by_group], group[by_group])
    step_order = np.argsort(rank, kind="stable")
    steps = np.searchsorted(rank[step_order], np.arange(rank.max() + 2))
    # Padding slots start out "matched", so they are never candidates.
    taken = np.broadcast_to(np.isnan(gt_start), (thresholds.size, *gt_start.shape)).copy()
    tp = np.zeros((thresholds.size, n), dtype=bool)
    for k in range(steps.size - 1):
        idx = step_order[steps[k] : steps[k + 1]]  # (n_k,) at most one per group
        g = group[idx]
        tiou = temporal_iou(start[idx, None], end[idx, None], gt_start[g], gt_end[g])  # (n_k, K)
        candidate = np.where(taken[:, g], -1.0, tiou)  # (T, n_k, K)
        best = candidate.argmax(axis=2)  # (T, n_k), first slot on ties
        hit = np.take_along_axis(candidate, best[..., None], axis=2)[..., 0] >= thresholds[:, None]
        tp[:, idx] = hit
        t, j = np.nonzero(hit)
        taken[t, g[j], best[t, j]] = True
    return tp


def _average_precision(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """All-points interpolated AP (T,) in [0, 1] of one class's true positives (T, N) in rank order.

    Recall rises by 1 / num_gt at each true positive, so the area under the interpolated
    precision/recall curve is the sum over true positives of the best precision at or after them.
    """
    if tp.shape[1] == 0:
        return np.zeros(tp.shape[0])
    precision = np.cumsum(tp, axis=1) / np.arange(1, tp.shape[1] + 1)  # (T, N)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return (precision * tp).sum(axis=1) / num_gt
