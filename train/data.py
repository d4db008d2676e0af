"""UnAV-100-layout data: annotation JSON + one flat folder of per-video ``(T, C)`` feature files.

Handling of imperfect input (each tested):
- a missing, truncated or non-numeric feature file, NaN/inf in features, feature dims that differ
  from the config: ``DataError`` naming the file and what to do;
- audio and visual of different lengths: both truncated to the shorter one (UnAV-100's own rule),
  with a warning when they differ by more than 2 steps;
- segments reaching outside ``[0, duration]``: clipped; segments with nothing left: dropped, warned;
- a video with an empty annotation list: kept as a background-only clip;
- a ``label_id`` outside ``[0, num_classes)`` or a label name used with two ids: ``DataError``;
- videos of the annotation file without (readable) feature files, as when users extract their
  own for part of UnAV-100: found before training starts (`usable_records`), reported (how many,
  the first few), and an error unless ``data.skip_missing_features`` trains on the others.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loco_stream.config import DataConfig, ModelConfig


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file and the fix."""


@dataclass
class VideoRecord:
    video_id: str
    duration: float  # seconds
    segments: np.ndarray  # (K, 2) seconds
    labels: np.ndarray  # (K,) int


def read_annotation_file(path: str | Path) -> dict:
    """The ``database`` mapping of a UnAV-100 annotation JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist (set data.annotations)")
    try:
        with open(path, encoding="utf-8") as handle:
            database = json.load(handle)["database"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"annotation file {path} is not valid JSON: {error}") from None
    except (KeyError, TypeError):
        raise DataError(
            f'annotation file {path} has no top-level "database" mapping (UnAV-100 layout)'
        ) from None
    if not isinstance(database, dict):
        raise DataError(f'annotation file {path}: "database" must map video ids to entries')
    return database


def class_names(database: dict) -> dict[int, str]:
    """``label_id -> label`` over every annotation; a name with two ids is an error."""
    names: dict[int, str] = {}
    for video_id, entry in database.items():
        for event in entry.get("annotations", []):
            label_id, label = int(event["label_id"]), str(event.get("label", event["label_id"]))
            if names.setdefault(label_id, label) != label:
                raise DataError(
                    f"video {video_id}: label_id {label_id} is {label!r} here but "
                    f"{names[label_id]!r} elsewhere; fix the annotation file"
                )
    return names


def load_records(
    annotations: str | Path, split: str, num_classes: int
) -> tuple[list[VideoRecord], dict[int, str]]:
    """Videos of one split with segments in seconds, and the class names of the whole file."""
    database = read_annotation_file(annotations)
    names = class_names(database)
    records = []
    for video_id, entry in database.items():
        if entry.get("subset") != split:
            continue
        duration = float(entry.get("duration", 0.0))
        segments, labels = [], []
        for event in entry.get("annotations", []):
            label_id = int(event["label_id"])
            if not 0 <= label_id < num_classes:
                raise DataError(
                    f"video {video_id}: label_id {label_id} ({event.get('label')!r}) is outside "
                    f"[0, {num_classes}); set model.num_classes to cover every class"
                )
            start, end = (float(x) for x in event["segment"])
            clipped = (max(start, 0.0), min(end, duration) if duration > 0 else end)
            if clipped[1] <= clipped[0]:
                warnings.warn(
                    f"video {video_id}: segment [{start}, {end}] lies outside the video "
                    f"(duration {duration}); dropped",
                    stacklevel=2,
                )
                continue
            segments.append(clipped)
            labels.append(label_id)
        records.append(
            VideoRecord(
                video_id,
                duration,
                np.array(segments, dtype=np.float64).reshape(-1, 2),
                np.array(labels, dtype=np.int64),
            )
        )
    if not records:
        subsets = sorted({str(entry.get("subset")) for entry in database.values()})
        raise DataError(f"no videos of split {split!r} in {annotations}; it has {subsets}")
    return records, names


MISSING_LISTED = 5  # videos named in the report of videos without features


def usable_records(
    records: list[VideoRecord], data: DataConfig, split: str
) -> tuple[list[VideoRecord], str | None]:
    """The records whose feature files all exist with a readable .npy header, and a report of the
    others (None when every video has its features). Without ``data.skip_missing_features``
    any video without features is a ``DataError``; so is a split with none left."""
    folder = Path(data.feature_dir)
    kept, missing = [], []
    for record in records:
        problem = _feature_problem(folder, record.video_id, data)
        (kept if problem is None else missing).append(record if problem is None else problem)
    if not missing:
        return records, None
    names = ", ".join(vid for vid, _ in missing[:MISSING_LISTED])
    report = (
        f"{len(missing)} of {len(records)} {split} videos have no usable features in {folder} "
        f"(first: {names}; {missing[0][1]})"
    )
    if not data.skip_missing_features:
        raise DataError(
            f"{report}; extract them, or set data.skip_missing_features=true to use the others"
        )
    if not kept:
        raise DataError(f"{report}: none of the {split} videos is left")
    return kept, f"{report}; using the other {len(kept)} (data.skip_missing_features)"


def _feature_problem(folder: Path, video_id: str, data: DataConfig) -> tuple[str, str] | None:
    """(video_id, what is wrong) when a feature file of the video is missing or unreadable."""
    for pattern in [*data.visual_files, *data.audio_files]:
        path = folder / pattern.format(vid=video_id)
        if not path.is_file():
            return video_id, f"{path.name} is missing"
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return video_id, f"{path.name} is not a readable .npy file"
    return None


def _load_array(path: Path, expected_rank: int = 2) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"feature file {path} is missing (check data.feature_dir and file names)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(
            f"feature file {path} is truncated or not a .npy array ({error}); re-extract it"
        ) from None
    if array.ndim != expected_rank or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"feature file {path} has shape {array.shape}; expected (T, C) numbers")
    return array.astype(np.float32, copy=False)


def load_features(
    feature_dir: str | Path,
    video_id: str,
    data: DataConfig,
    model: ModelConfig,
    allow_non_finite: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """visual (T, Dv) and audio (T, Da) of one video, truncated to a common length (NaN/inf are
    an error unless ``allow_non_finite``: the feature check counts them)."""
    folder = Path(feature_dir)
    streams = []
    for patterns, dim, name in (
        (data.visual_files, model.visual_dim, "visual"),
        (data.audio_files, model.audio_dim, "audio"),
    ):
        parts = [_load_array(folder / pattern.format(vid=video_id)) for pattern in patterns]
        length = min(len(p) for p in parts)
        stream = np.concatenate([p[:length] for p in parts], axis=1)
        if stream.shape[1] != dim:
            raise DataError(
                f"video {video_id}: {name} features have {stream.shape[1]} channels "
                f"({', '.join(patterns)}) but model.{name}_dim is {dim}"
            )
        if not allow_non_finite and not np.isfinite(stream).all():
            bad = int((~np.isfinite(stream)).sum())
            raise DataError(
                f"video {video_id}: {bad} NaN/inf values in its {name} features; re-extract them"
            )
        streams.append(stream)
    visual, audio = streams
    if abs(len(visual) - len(audio)) > 2:
        warnings.warn(
            f"video {video_id}: {len(visual)} visual and {len(audio)} audio steps; "
            "both truncated to the shorter",
            stacklevel=2,
        )
    length = min(len(visual), len(audio))
    if length == 0:
        raise DataError(f"video {video_id}: its feature files hold no steps")
    return visual[:length], audio[:length]


def seconds_to_steps(segments: np.ndarray, data: DataConfig) -> np.ndarray:
    """Seconds -> step coordinates (step i centred at ``step_offset + i * step_seconds``)."""
    return (segments - data.step_offset) / data.step_seconds
