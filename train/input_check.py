"""Stage 1 of ``loco-train``: the videos against the annotation file (UnAV-100 layout).

Each video's streams and length, the classes and the splits, with every problem of a kind listed
in one ``InputError``; the result is the work folder's ``annotations.json``: label ids, probed
durations, a validation share held out of ``train`` when the file has no ``validation`` subset,
and the ``--background`` clips as event-free training and validation clips.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

import av
from tqdm import tqdm

from .extract_features import VIDEO_SUFFIXES
from .run_settings import InputError, Settings

MIN_TRAIN_VIDEOS = 3  # with one held out for validation, at least this many must train
BACKGROUND_VALIDATION_SHARE = 0.15
SEGMENT_SLACK_SECONDS = 0.5  # an annotation may end this far past the probed end of its video
SUBSETS = ("train", "validation", "test")  # the order subsets are reported in


def video_files(folder: Path) -> dict[str, Path]:
    """Video id (file stem) -> file, for every video file under ``folder``."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            if path.stem in found:
                raise InputError(
                    f"{found[path.stem]} and {path} have the same name; video ids must be unique"
                )
            found[path.stem] = path
    return found


def probe(path: Path) -> tuple[float, str | None]:
    """(duration in seconds, what is wrong or None) of a media file."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0.0, "has no video stream"
            if not container.streams.audio:
                return 0.0, "has no audio stream"
            if container.duration is not None:
                return container.duration / av.time_base, None
            stream = container.streams.video[0]
            if stream.duration is None or stream.time_base is None:
                return 0.0, "has no duration"
            return float(stream.duration * stream.time_base), None
    except (av.error.FFmpegError, OSError) as error:
        return 0.0, f"cannot be read ({error})"


def probe_all(paths: dict[str, Path], what: str) -> dict[str, float]:
    """Durations of every file; an ``InputError`` listing the files that cannot be used."""
    durations, problems = {}, []
    for video_id, path in tqdm(paths.items(), desc=f"check {what}", unit="video", leave=False):
        durations[video_id], problem = probe(path)
        if problem:
            problems.append(f"{path} {problem}")
    if problems:
        raise InputError(
            f"{len(problems)} {what} cannot be used (events must be both seen and heard):\n  "
            + "\n  ".join(problems)
        )
    return durations


def _listing(ids: list[str], limit: int = 10) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def read_database(annotations: Path) -> dict:
    try:
        database = json.loads(annotations.read_text(encoding="utf-8"))["database"]
    except FileNotFoundError:
        raise InputError(f"annotation file {annotations} does not exist") from None
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"annotation file {annotations} is not UnAV-100 JSON with a top-level "
            f'"database" ({error})'
        ) from None
    if not isinstance(database, dict) or not database:
        raise InputError(f'annotation file {annotations}: "database" holds no videos')
    return database


def class_ids(database: dict) -> list[str]:
    """Class names in id order: the file's ``label_id`` values when every event has one and they
    run 0..K-1 with one name each, else the sorted names."""
    names: dict[int, str] = {}
    events = [e for entry in database.values() for e in entry.get("annotations", [])]
    if not events:
        raise InputError("the annotation file holds no event: nothing to learn")
    if all("label_id" in e for e in events):
        for event in events:
            names.setdefault(int(event["label_id"]), str(event.get("label", event["label_id"])))
        consistent = all(
            names[int(e["label_id"])] == str(e.get("label", e["label_id"])) for e in events
        )
        if consistent and sorted(names) == list(range(len(names))):
            return [names[i] for i in range(len(names))]
    missing = [e for e in events if "label" not in e]
    if missing:
        raise InputError(f"{len(missing)} events have no label; give each event a label name")
    return sorted({str(e["label"]) for e in events})


def hold_out_validation(train_ids: list[str], database: dict, share: float, seed: int) -> list[str]:
    """Move a share of the train videos to validation, keeping an event of every class in train."""
    if len(train_ids) < MIN_TRAIN_VIDEOS + 1:
        raise InputError(
            f"{len(train_ids)} train videos are too few to hold out a validation split (need "
            f"{MIN_TRAIN_VIDEOS + 1}); add videos or a 'validation' subset to the annotation file"
        )
    wanted = max(1, round(share * len(train_ids)))
    left = Counter(e["label"] for v in train_ids for e in database[v]["annotations"])
    order = sorted(train_ids)
    random.Random(seed).shuffle(order)
    held_out = []
    for video_id in order:
        if len(held_out) == wanted:
            break
        counts = Counter(e["label"] for e in database[video_id]["annotations"])
        if all(left[label] > count for label, count in counts.items()):
            left -= counts
            held_out.append(video_id)
    if not held_out:
        raise InputError(
            "no train video can be held out for validation without taking the last event of a "
            "class out of training; add videos or a 'validation' subset"
        )
    return held_out


def _subset(entry: dict) -> str:
    return str(entry.get("subset", "train"))


def _event_label(event: dict, names: list[str]) -> str:
    return str(event.get("label", names[int(event.get("label_id", 0))]))


def drop_missing_videos(
    database: dict, videos: dict[str, Path], folder: Path
) -> tuple[dict, dict[str, int]]:
    """``--skip-missing-videos``: the entries whose video is in ``folder`` and how many of each
    subset are not (printed in one line); an ``InputError`` when too few train videos are left."""
    kept = {video_id: entry for video_id, entry in database.items() if video_id in videos}
    counts = Counter(_subset(e) for video_id, e in database.items() if video_id not in kept)
    order = sorted(counts, key=lambda s: (SUBSETS.index(s) if s in SUBSETS else len(SUBSETS), s))
    missing = {subset: counts[subset] for subset in order}
    if not kept:
        raise InputError(
            f"none of the {len(database)} annotated videos is in {folder}; --videos must hold "
            "files named by their ids (<id>.mp4)"
        )
    if missing:
        per_subset = ", ".join(f"{subset} {count}" for subset, count in missing.items())
        print(
            f"check: {sum(missing.values())} of {len(database)} annotated videos are missing from "
            f"{folder} ({per_subset}); training on the {len(kept)} that exist",
            flush=True,
        )
    train_left = sum(_subset(e) == "train" for e in kept.values())
    if train_left < MIN_TRAIN_VIDEOS:
        annotated = train_left + missing.get("train", 0)
        raise InputError(
            f"only {train_left} of the {annotated} annotated train videos are in {folder} "
            f"(need at least {MIN_TRAIN_VIDEOS}); add more of them to --videos"
        )
    if counts["validation"] and not any(_subset(e) == "validation" for e in kept.values()):
        print(
            f"check: none of the {counts['validation']} validation videos is in {folder}; "
            "holding out a share of train for validation",
            flush=True,
        )
    return kept, missing


def check_inputs(settings: Settings) -> dict:
    """The work folder's annotation database (UnAV layout, with ``label_id``, probed
    ``duration`` and each clip's ``path``); raises ``InputError`` on the first kind of problem.
    With ``skip_missing_videos`` the annotated videos that are not in ``--videos`` are left out
    (counted per subset in ``missing_videos``) and the classes stay the file's."""
    if not settings.videos.is_dir():
        raise InputError(f"--videos {settings.videos} is not a folder")
    database = read_database(settings.annotations)
    videos = video_files(settings.videos)
    unlabelled = sorted(set(videos) - set(database))
    unseen = sorted(set(database) - set(videos))
    lines = []
    if unlabelled:
        lines.append(
            f"{len(unlabelled)} videos have no entry in {settings.annotations.name} (add "
            f"them, with an empty annotation list if they hold no event, or move them out): "
            f"{_listing(unlabelled)}"
        )
    if unseen and not settings.skip_missing_videos:
        lines.append(
            f"{len(unseen)} annotated videos are not in {settings.videos}: {_listing(unseen)} "
            "(--skip-missing-videos trains on the videos that exist)"
        )
    if lines:
        raise InputError("\n".join(lines))
    names = class_ids(database)  # of the whole file: a class of missing videos only keeps its id
    annotated, missing = database, {}
    if settings.skip_missing_videos:
        database, missing = drop_missing_videos(database, videos, settings.videos)
    durations = probe_all(videos, "videos")
    outside = []
    out: dict[str, dict] = {}
    for video_id, entry in database.items():
        duration = durations[video_id]
        events = []
        for event in entry.get("annotations", []):
            start, end = (float(x) for x in event["segment"])
            if not 0 <= start < end <= duration + SEGMENT_SLACK_SECONDS:
                outside.append(f"{video_id} [{start}, {end}] (video: {duration:.2f} s)")
            label = _event_label(event, names)
            events.append(
                {
                    "segment": [start, min(end, duration)],
                    "label": label,
                    "label_id": names.index(label),
                }
            )
        out[video_id] = {
            "subset": str(entry.get("subset", "train")),
            "duration": round(duration, 3),
            "annotations": events,
            "path": str(videos[video_id].resolve()),
        }
        for key in ("visible", "audible"):  # the synthetic generator's per-modality intervals
            if key in entry:
                out[video_id][key] = entry[key]
    if outside:
        raise InputError(
            f"{len(outside)} annotations lie outside their video; fix the segments:\n  "
            + "\n  ".join(outside[:20])
        )
    train_ids = [v for v, e in out.items() if e["subset"] == "train"]
    if not any(e["subset"] == "validation" for e in out.values()):
        for video_id in hold_out_validation(
            train_ids, out, settings.validation_share, settings.seed
        ):
            out[video_id]["subset"] = "validation"
    trained = Counter(
        e["label"] for v in out.values() if v["subset"] == "train" for e in v["annotations"]
    )
    lost = {  # classes trained in the file by videos that are missing
        _event_label(e, names)
        for video_id, entry in annotated.items()
        if video_id not in out and _subset(entry) == "train"
        for e in entry.get("annotations", [])
    }
    untrained = [name for name in names if not trained[name] and name not in lost]
    if untrained:
        raise InputError(
            f"classes with no event in the train subset: {_listing(untrained)}; annotate "
            "training videos of them or remove them"
        )
    unlearnt = [name for name in names if not trained[name]]
    if unlearnt:
        print(
            f"check: warning: {len(unlearnt)} of {len(names)} classes have no train event left "
            f"(their train videos are missing); they keep their ids but are not learnt: "
            f"{_listing(unlearnt, 5)}",
            file=sys.stderr,
            flush=True,
        )
    if settings.background is not None:
        out.update(background_entries(settings.background, set(out), settings.seed))
    checked = {"database": out, "classes": names}
    if settings.skip_missing_videos:
        checked["missing_videos"] = missing
    return checked


def background_entries(folder: Path, taken: set[str], seed: int) -> dict[str, dict]:
    """Event-free clips: mostly training negatives, a share for validation (false positives
    there lower the validation mAP, so selection sees them)."""
    if not folder.is_dir():
        raise InputError(f"--background {folder} is not a folder")
    videos = {f"background_{v}": path for v, path in video_files(folder).items()}
    if not videos:
        raise InputError(f"--background {folder} holds no video file")
    clash = sorted(set(videos) & taken)
    if clash:
        raise InputError(f"background clips named like annotated videos: {_listing(clash)}")
    durations = probe_all(videos, "background clips")
    order = sorted(videos)
    random.Random(seed).shuffle(order)
    validation = set(order[: math.floor(BACKGROUND_VALIDATION_SHARE * len(order))])
    return {
        video_id: {
            "subset": "validation" if video_id in validation else "train",
            "duration": round(durations[video_id], 3),
            "annotations": [],
            "background": True,
            "path": str(path.resolve()),
        }
        for video_id, path in videos.items()
    }
