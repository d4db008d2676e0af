"""From labelled videos to a live detector, in one command: ``loco-train``.

    loco-train --videos DIR --annotations A.json --out MODEL_DIR [--extractors NAME]
        [--background DIR] [--epochs N] [--workdir DIR] [--config FILE] [--check-only]
        [--skip-missing-videos] [section.key=value ...]

Six stages; each keeps its output in the work folder, so a rerun resumes where the last stopped:

1. check       the videos against the annotation file (UnAV-100 layout), each video's streams
               and length, the classes and the splits; writes the work folder's
               ``annotations.json``: label ids, probed durations, a validation share held out of
               ``train`` when the file has no ``validation`` subset, and the ``--background``
               clips as event-free training and validation clips.
2. extractors  ``trainable`` (the default): the project's audio and visual CNNs, each learning
               from its own modality which classes are present in a step (the annotated events;
               background clips are negatives), or a shipped frozen set (train/extractor_sets.py).
3. features    every clip through the exported extractor graphs, the ones the stream runs,
               then the feature check (``train/feature_check.py``): dead and constant
               dimensions, NaN/inf and a linear probe per modality, with a plain warning when
               a modality does not separate the classes (``--check-only`` stops here).
4. train       LoCo (``configs/edge.yaml`` sized to the classes and features), standardising
               the features with the train split's statistics, for a number of steps sized to
               the data (``train/schedule.py``), keeping the best checkpoint on the validation
               split and stopping early when it stops improving (``loco/curve.png``).
5. score       the ``test`` subset with the reference evaluator (skipped when there is none).
6. export      the model directory, every graph checked against torch (``python -m export``'s
               code), opened again by the runtime; its card holds the scores, the settings and
               each stage's time (``model_card.json`` and ``MODEL_CARD.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
from tqdm import tqdm

from export.__main__ import export_model_dir, load_job
from loco_stream.bundle import EXTRACTOR_CHECKPOINT, WINDOW_CHECKPOINT
from loco_stream.config import ConfigError, load_config
from loco_stream.features.extractor_graphs import ExtractorGraphs
from loco_stream.features.media import MediaError
from loco_stream.limits import LimitError
from loco_stream.limits import check as check_limit
from loco_stream.model_dir import ModelDir

from .checkpoint import half_precision, load_checkpoint, load_model, save_checkpoint
from .curve import curve_table, read_metrics
from .data import DataError
from .evaluate import evaluate_split
from .extract_features import VIDEO_SUFFIXES, Extractors, extract_folder
from .extractor_sets import SETS, PretrainedFiles, write_extractor_set
from .extractors import LabelledClip, train_extractors
from .feature_check import check_features, report_json, report_text
from .loop import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "edge.yaml"
TRAINABLE = "trainable"
STAGES = ("check", "extractors", "features", "train", "score", "export")
DATA_STAGES = STAGES[:3]  # what the LoCo settings do not change
MIN_TRAIN_VIDEOS = 3  # with one held out for validation, at least this many must train
BACKGROUND_VALIDATION_SHARE = 0.15
SEGMENT_SLACK_SECONDS = 0.5  # an annotation may end this far past the probed end of its video


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


# ---------------------------------------------------------------------------- stage 1: check


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


SUBSETS = ("train", "validation", "test")  # the order subsets are reported in


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


# ---------------------------------------------------------------- stages 2-6: the model itself


def media_folder(workdir: Path, database: dict) -> Path:
    """``workdir/media/<id><suffix>``: links to every clip under its id (features are named so)."""
    folder = workdir / "media"
    folder.mkdir(parents=True, exist_ok=True)
    for video_id, entry in database.items():
        source = Path(entry["path"])
        link = folder / f"{video_id}{source.suffix}"
        if not link.is_symlink() or link.resolve() != source:
            link.unlink(missing_ok=True)
            link.symlink_to(source)
    return folder


EXTRACTOR_FILES = (EXTRACTOR_CHECKPOINT, "visual_extractor.onnx", "audio_extractor.onnx")


def make_extractors(settings: Settings, database: dict, num_classes: int, folder: Path) -> dict:
    """Stage 2: the extractor graphs in ``folder``; returns a report."""
    if settings.extractors_from is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in EXTRACTOR_FILES:
            source = settings.extractors_from / name
            if not source.is_file():
                raise InputError(f"--extractors-from {settings.extractors_from} has no {name}")
            shutil.copyfile(source, folder / name)
        return {"set": TRAINABLE, "taken_from": str(settings.extractors_from)}
    if settings.extractors != TRAINABLE:
        errors = write_extractor_set(settings.extractors, folder, files=PretrainedFiles())
        return {"set": settings.extractors, "onnx_max_abs_error": errors}

    def clips(subset: str, labelled_limit: int) -> list[LabelledClip]:
        chosen = [v for v, e in sorted(database.items()) if e["subset"] == subset]
        labelled = [v for v in chosen if not database[v].get("background")][:labelled_limit]
        background = [v for v in chosen if database[v].get("background")]
        return [
            LabelledClip(
                Path(database[v]["path"]),
                database[v].get("visible", database[v]["annotations"]),
                database[v].get("audible", database[v]["annotations"]),
            )
            for v in labelled + background
        ]

    report = train_extractors(
        clips("train", settings.extractor_clips),
        clips("validation", max(settings.extractor_clips // 6, 4)),
        folder,
        num_classes,
        settings.extractor_epochs,
        seed=settings.seed,
    )
    return {"set": TRAINABLE, **report}


def loco_config(settings: Settings, workdir: Path, num_classes: int):
    """The LoCo config: ``--config`` sized to the classes, features and step of the extractors."""
    graphs = ExtractorGraphs(workdir / "extractors", threads=1)
    spec, visual_dim, audio_dim = graphs.spec, graphs.visual_dim, graphs.audio_dim
    graphs.close()
    visual_name, audio_name = feature_names(settings.extractors)
    overrides = [
        f"model.num_classes={num_classes}",
        f"model.visual_dim={visual_dim}",
        f"model.audio_dim={audio_dim}",
        f"data.annotations={workdir / 'annotations.json'}",
        f"data.feature_dir={workdir / 'features'}",
        f'data.visual_files=["{{vid}}_{visual_name}.npy"]',
        f'data.audio_files=["{{vid}}_{audio_name}.npy"]',
        f"data.step_seconds={spec.step_seconds}",
        f"data.step_offset={spec.step_seconds / 2}",
        f"train.output_dir={workdir / 'loco'}",
        *([f"train.epochs={settings.epochs}"] if settings.epochs else []),
        *settings.overrides,
    ]
    return load_config(settings.config, overrides)


def feature_names(extractors: str) -> tuple[str, str]:
    return ("visual", "audio") if extractors == TRAINABLE else SETS[extractors].feature_names()


def ship_weights(best: Path, out: Path, classes: list[str]) -> Path:
    """``loco.pt``: the EMA weights in fp16 (loaded back into fp32), config and class names only
    (the annotation file's, also of classes whose videos are all missing)."""
    state = load_checkpoint(best)
    shipped = {
        "model": half_precision(state["ema"]),
        "config": state["config"],
        "class_names": classes,
        "epoch": state["epoch"],
    }
    save_checkpoint(out / WINDOW_CHECKPOINT, shipped)
    return out / WINDOW_CHECKPOINT


# ------------------------------------------------------------------------- the run, resumable


class Progress:
    """``workdir/stages.json``: each finished stage's seconds and outcome, and two fingerprints:
    of the data (inputs, extractors, splits) and of the LoCo training (config, epochs, overrides).
    A rerun skips what is done; other data is refused, another training redoes train, score and
    export (the earlier ``loco/`` folder kept beside as ``loco.<fingerprint>``)."""

    def __init__(self, workdir: Path, data: str, training: str) -> None:
        self.path = workdir / "stages.json"
        state = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if state and state.get("data") != data:
            raise InputError(
                f"the work folder {workdir} holds a run on other inputs or extractor settings; "
                "pass another --workdir or delete it"
            )
        self.done: dict[str, dict] = state.get("done", {})
        if state and state.get("training") != training:
            earlier = workdir / "loco"
            if earlier.is_dir():
                kept = earlier.with_name(f"loco.{state.get('training')}")
                earlier.rename(kept)
                print(f"other LoCo settings: training again (the earlier run is kept in {kept})")
            self.done = {k: v for k, v in self.done.items() if k in DATA_STAGES}
        self.data, self.training = data, training
        self.ran: set[str] = set()

    def finish(self, stage: str, seconds: float, outcome: str) -> None:
        self.done[stage] = {"seconds": round(seconds, 1), "outcome": outcome}
        self.ran.add(stage)
        state = {"data": self.data, "training": self.training, "done": self.done}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        temporary.replace(self.path)

    def table(self) -> str:
        rows = [f"{'stage':<11} {'this run':<9} {'seconds':>8}  outcome"]
        for stage in STAGES:
            entry = self.done.get(stage)
            if entry is None:
                rows.append(f"{stage:<11} {'not run':<9} {'':>8}")
                continue
            status = "ran" if stage in self.ran else "kept"
            rows.append(f"{stage:<11} {status:<9} {entry['seconds']:>8.1f}  {entry['outcome']}")
        return "\n".join(rows)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def data_fingerprint(settings: Settings) -> str:
    """What check, extractors and features depend on: the inputs' names, sizes and times, and
    the extractor and split settings."""
    parts = [str(settings.annotations.resolve()), str(settings.annotations.stat().st_mtime_ns)]
    folders = [settings.videos] + ([settings.background] if settings.background else [])
    for folder in folders:
        for path in sorted(folder.resolve().rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                parts.append(f"{path}:{path.stat().st_size}")
    knobs = (
        settings.extractors,
        settings.validation_share,
        settings.extractor_clips,
        settings.extractor_epochs,
        settings.seed,
    )
    # only when set: the work folders of runs without the option keep their fingerprint
    knobs += ("skip_missing_videos",) if settings.skip_missing_videos else ()
    knobs += (str(settings.extractors_from.resolve()),) if settings.extractors_from else ()
    return _digest([*parts, json.dumps(knobs)])


def training_fingerprint(settings: Settings) -> str:
    """What LoCo's training depends on beyond the data: the config's text, epochs, overrides."""
    config = settings.config.read_text() if settings.config.is_file() else str(settings.config)
    overrides = [o for o in settings.overrides if not o.startswith("train.num_threads=")]
    return _digest([config, json.dumps((settings.epochs, overrides))])


def run(settings: Settings) -> tuple[dict, Progress]:
    """Every stage not done yet; returns the model card's results and the stages' record."""
    workdir = settings.workdir
    if settings.extractors not in (TRAINABLE, *SETS):
        raise InputError(
            f"--extractors {settings.extractors!r}: use {TRAINABLE} or one of {sorted(SETS)}"
        )
    if not settings.annotations.is_file():
        raise InputError(f"--annotations {settings.annotations} does not exist")
    if not settings.videos.is_dir():
        raise InputError(f"--videos {settings.videos} is not a folder")
    workdir.mkdir(parents=True, exist_ok=True)
    if not settings.config.is_file():
        raise InputError(f"--config {settings.config} does not exist")
    load_config(settings.config, settings.overrides)  # sizes and types refused before any stage
    progress = Progress(workdir, data_fingerprint(settings), training_fingerprint(settings))

    def stage(name: str, number: int) -> bool:
        """Announce a stage; False when an earlier run finished it."""
        if name in progress.done:
            print(
                f"[{number}/6] {name}: done earlier ({progress.done[name]['outcome']})", flush=True
            )
            return False
        print(f"[{number}/6] {name}", flush=True)
        return True

    annotations = workdir / "annotations.json"
    if stage("check", 1):
        began = time.perf_counter()
        checked = check_inputs(settings)
        annotations.write_text(json.dumps(checked, indent=1))
        subsets = Counter(e["subset"] for e in checked["database"].values())
        outcome = f"{len(checked['classes'])} classes; " + ", ".join(
            f"{count} {subset}" for subset, count in sorted(subsets.items())
        )
        if checked.get("missing_videos"):
            outcome += f"; {sum(checked['missing_videos'].values())} missing videos skipped"
        progress.finish("check", time.perf_counter() - began, outcome)
    checked = json.loads(annotations.read_text())
    database, classes = checked["database"], checked["classes"]

    extractor_dir = workdir / "extractors"
    if stage("extractors", 2):
        began = time.perf_counter()
        report = make_extractors(settings, database, len(classes), extractor_dir)
        (workdir / "extractors.json").write_text(json.dumps(report, indent=1))
        accuracy = [
            f"{k.split('_')[0]} {v:.3f}" for k, v in report.items() if k.endswith("accuracy")
        ]
        outcome = settings.extractors + (
            f" (step presence accuracy {', '.join(accuracy)})" if accuracy else ""
        )
        progress.finish("extractors", time.perf_counter() - began, outcome)

    features = workdir / "features"
    if stage("features", 3):
        began = time.perf_counter()
        media = media_folder(workdir, database)
        extractors = Extractors(
            str(extractor_dir), is_set=True, names=feature_names(settings.extractors)
        )
        videos = sorted(media.iterdir())
        todo = [v for v in videos if not all(p.exists() for p in extractors.paths(features, v))]
        failures = extract_folder(todo, features, extractors, settings.workers)
        if failures:
            listed = "\n  ".join(f"{v.name}: {m}" for v, m in failures.items())
            raise InputError(f"feature extraction failed for {len(failures)} clips:\n  {listed}")
        reports = check_features(loco_config(settings, workdir, len(classes)))
        (workdir / "feature_check.json").write_text(json.dumps(report_json(reports), indent=1))
        print(report_text(reports), flush=True)
        probes = ", ".join(f"{r.modality} {r.probe_f1:.2f}" for r in reports)
        outcome = f"{len(videos)} clips; probe macro-F1 {probes}"
        progress.finish("features", time.perf_counter() - began, outcome)
    if settings.check_only:
        return {}, progress

    config = loco_config(settings, workdir, len(classes))
    best = workdir / "loco" / "best.pt"
    if stage("train", 4):
        began = time.perf_counter()
        last = workdir / "loco" / "last.pt"
        best = train(config, resume=str(last) if last.is_file() else None)
        epoch = load_checkpoint(best)["epoch"]
        progress.finish("train", time.perf_counter() - began, f"best on validation: epoch {epoch}")

    shipped = ship_weights(best, workdir, classes)  # what ships is what is scored and exported
    scores_path = workdir / "scores.json"
    if stage("score", 5):
        began = time.perf_counter()
        scores = score(shipped, config)
        scores_path.write_text(json.dumps(scores, indent=1))
        outcome = f"test avg mAP {scores['test_average_mAP']:.2f}" if scores else "no test subset"
        progress.finish("score", time.perf_counter() - began, outcome)
    scores = json.loads(scores_path.read_text())

    if stage("export", 6):
        began = time.perf_counter()
        results = card_results(settings, database, classes, config, scores, progress)
        job = load_job(
            shipped, settings.out, extractors=extractor_dir / EXTRACTOR_CHECKPOINT, results=results
        )
        export_model_dir(job)
        with ModelDir(settings.out) as model:  # the runtime opens what was written
            opened = f"{len(model.info.classes)} classes on {model.window_graph.device}"
        (settings.out / "MODEL_CARD.md").write_text(model_card_text(results, opened))
        progress.finish("export", time.perf_counter() - began, f"{settings.out} ({opened})")
    card = json.loads((settings.out / "model_card.json").read_text())
    return card.get("results", {}), progress


def score(shipped: Path, config) -> dict:
    """Test-subset scores of the shipped weights ({} when the file has no test subset)."""
    database = json.loads(Path(config.data.annotations).read_text())["database"]
    if not any(e["subset"] == config.data.test_split for e in database.values()):
        return {}
    model, _, names = load_model(shipped)
    result, predictions = evaluate_split(model, config, names, config.data.test_split)
    (shipped.parent / "results_test.json").write_text(json.dumps(predictions))
    return {
        "test_average_mAP": round(result.average, 2),
        "test_mAP": {
            f"{t:.1f}": round(m, 2) for t, m in zip(result.tious, result.mAP, strict=True)
        },
    }


def card_results(
    settings: Settings, database: dict, classes: list[str], config, scores: dict, progress: Progress
) -> dict:
    """The model card's ``results``: scores, data, settings and each stage's time."""
    subsets = Counter(
        ("background " if e.get("background") else "") + e["subset"] for e in database.values()
    )
    return {
        **scores,
        "clips": dict(sorted(subsets.items())),
        "classes": len(classes),
        "extractors": settings.extractors,
        **trained_length(Path(config.train.output_dir)),
        "feature_check": feature_check_summary(settings.workdir),
        "config": str(settings.config.name),
        "overrides": settings.overrides,
        "stage_seconds": {stage: entry["seconds"] for stage, entry in progress.done.items()},
        "command": settings.command,
    }


def trained_length(run: Path) -> dict:
    """Epochs and optimizer steps LoCo trained, the step of the kept checkpoint, early stop."""
    metrics = read_metrics(run / "metrics.jsonl")
    if not metrics:
        return {}
    validated = [m for m in metrics if "val_mAP" in m]
    best = max(validated, key=lambda m: m["val_mAP"]) if validated else metrics[-1]
    return {
        "epochs": metrics[-1]["epoch"],
        "steps": metrics[-1].get("step"),
        "best_step": best.get("step"),
        "stopped_early": bool(metrics[-1].get("stopped_early")),
    }


def feature_check_summary(workdir: Path) -> dict:
    """Probe macro-F1 and chance per modality from the features stage's check."""
    path = workdir / "feature_check.json"
    if not path.is_file():
        return {}
    reports = json.loads(path.read_text())
    keys = ("probe_f1", "chance_f1", "separates")
    return {modality: {k: report[k] for k in keys} for modality, report in reports.items()}


def model_card_text(results: dict, opened: str) -> str:
    """``MODEL_CARD.md``: the card for people."""
    lines = [
        "# Model card",
        "",
        "Built by `loco-train`; runs with `loco-stream --model DIR` or `loco-detect --model DIR`.",
        f"Runtime: {opened}.",
        "",
        f"- classes: {results['classes']}; extractors: {results['extractors']}; "
        f"LoCo: {results.get('steps')} steps, {results.get('epochs')} epochs, kept step "
        f"{results.get('best_step')}{' (stopped early)' if results.get('stopped_early') else ''} "
        f"({results['config']} {' '.join(results['overrides'])})",
        f"- clips: {', '.join(f'{count} {subset}' for subset, count in results['clips'].items())}",
    ]
    if "test_average_mAP" in results:
        tious = " | ".join(results["test_mAP"])
        values = " | ".join(f"{m:.2f}" for m in results["test_mAP"].values())
        lines += [
            f"- test avg mAP: **{results['test_average_mAP']:.2f}**",
            "",
            f"| tIoU | {tious} |",
            "|---" * (len(results["test_mAP"]) + 1) + "|",
            f"| mAP | {values} |",
        ]
    else:
        lines.append("- no test subset: not scored")
    for modality, check in results.get("feature_check", {}).items():
        verdict = "separates the classes" if check["separates"] else "does NOT separate the classes"
        lines.append(
            f"- feature check, {modality}: probe macro-F1 {check['probe_f1']:.2f} "
            f"(chance {check['chance_f1']:.2f}), {verdict}"
        )
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds} |" for stage, seconds in results["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="loco-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=Path, required=True, help="folder of labelled videos")
    parser.add_argument("--annotations", type=Path, required=True, help="UnAV-100-style JSON")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument(
        "--extractors",
        default=TRAINABLE,
        help=f"{TRAINABLE} (default) or {', '.join(sorted(SETS))}",
    )
    parser.add_argument("--background", type=Path, help="folder of event-free videos (negatives)")
    parser.add_argument("--epochs", type=int, help="LoCo epochs (default: sized to the data)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: MODEL_DIR.work)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="LoCo config YAML")
    parser.add_argument(
        "--validation-share", type=float, default=0.15, help="of train, without a validation subset"
    )
    parser.add_argument("--extractor-clips", type=int, default=200)
    parser.add_argument("--extractor-epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="feature extraction processes")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="stop after extracting the features and checking that they separate the classes",
    )
    parser.add_argument(
        "--skip-missing-videos",
        action="store_true",
        help="train on the annotated videos that exist (part of UnAV-100), counting the others",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value for the LoCo config")
    args = parser.parse_args(argv)
    try:
        for flag, limit in LIMITED_FLAGS.items():
            if getattr(args, flag) is not None:
                check_limit(limit, getattr(args, flag), "--" + flag.replace("_", "-"))
    except LimitError as error:
        parser.error(str(error))
    if not 0 < args.validation_share < 1:
        parser.error("--validation-share must lie between 0 and 1")
    workdir = args.workdir or args.out.with_name(args.out.name + ".work")
    return Settings(
        videos=args.videos,
        annotations=args.annotations,
        out=args.out,
        workdir=workdir,
        extractors=args.extractors,
        background=args.background,
        epochs=args.epochs,
        config=args.config,
        overrides=args.overrides,
        validation_share=args.validation_share,
        extractor_clips=args.extractor_clips,
        extractor_epochs=args.extractor_epochs,
        workers=args.workers,
        skip_missing_videos=args.skip_missing_videos,
        check_only=args.check_only,
    )


# flag -> its limit (loco_stream.limits)
LIMITED_FLAGS = {
    "epochs": "epochs",
    "extractor_clips": "clips",
    "extractor_epochs": "epochs",
    "workers": "workers",
}
FAILURES = (InputError, ConfigError, DataError, MediaError)  # one-line errors, exit 2


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        run_and_report(settings)
    except FAILURES as error:
        print(f"loco-train: error: {error}", file=sys.stderr)
        return 2
    return 0


def run_and_report(settings: Settings) -> dict:
    """``run`` plus the final table (the CLI's and ``train.default_model``'s entry point)."""
    began = time.perf_counter()
    results, progress = run(settings)
    print()
    print(progress.table())
    if settings.check_only:
        print(
            f"features checked: {settings.workdir / 'feature_check.json'}; train without "
            "--check-only to go on"
        )
        return results
    print(curve_table(settings.workdir / "loco" / "metrics.jsonl"))
    print(f"training curve: {settings.workdir / 'loco' / 'curve.png'}")
    if "test_average_mAP" in results:
        print(f"test avg mAP {results['test_average_mAP']:.2f}")
    print(f"model directory: {settings.out}  ({time.perf_counter() - began:.0f} s this run)")
    print(f"run it: loco-stream --model {settings.out} --input VIDEO.mp4")
    return results


if __name__ == "__main__":
    sys.exit(main())
