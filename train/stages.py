"""The six stages of ``loco-train`` in order; each is skipped when an earlier run finished it.

Stage 1 (check) is ``input_check.py``; here are the others' steps: the extractor graphs, the
features and their check, LoCo's training, the test score and the exported model directory.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

from export.job import export_model_dir, load_job
from loco_stream.bundle import EXTRACTOR_CHECKPOINT, WINDOW_CHECKPOINT
from loco_stream.config import load_config
from loco_stream.features.checkpoints import CheckpointError
from loco_stream.model_dir import ModelDir
from loco_stream.runtime.extractor_graphs import ExtractorGraphs

from .checkpoint import half_precision, load_checkpoint, load_model, save_checkpoint
from .evaluate import evaluate_split
from .extract_features import Extractors, extract_folder
from .extractor_sets import SETS, PretrainedFiles, write_extractor_set
from .extractors import LabelledClip, train_extractors
from .feature_check import check_features, report_json, report_text
from .input_check import check_inputs
from .loop import train
from .map_head import HeadTraining
from .model_card import card_results, model_card_text
from .run_settings import TRAINABLE, InputError, Settings
from .stage_progress import Progress, data_fingerprint, training_fingerprint

EXTRACTOR_FILES = (EXTRACTOR_CHECKPOINT, "visual_extractor.onnx", "audio_extractor.onnx")


def run(settings: Settings) -> tuple[dict, Progress]:
    """Every stage not done yet; returns the model card's results and the stages' record."""
    workdir = settings.workdir
    if settings.extractors not in (TRAINABLE, *SETS):
        raise InputError(
            f"--extractors {settings.extractors!r}: use {TRAINABLE} or one of {sorted(SETS)}"
        )
    if settings.timing != "default" and settings.extractors == TRAINABLE:
        raise InputError(f"--timing {settings.timing} applies to a shipped set (--extractors)")
    if settings.extractors == "efficientnet-vggish" and settings.vggish is None:
        raise InputError(
            "--extractors efficientnet-vggish needs VGGish's checkpoint: pass --vggish "
            "vggish-10086976.pth (docs/extractors.md says where to download it)"
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

    train_clips = clips("train", settings.extractor_clips)
    held_out_clips = clips("validation", max(settings.extractor_clips // 6, 4))
    if settings.extractors != TRAINABLE:  # a shipped set: only its visual head (if any) learns
        head_training = HeadTraining(
            train_clips, held_out_clips, num_classes, folder / "maps", seed=settings.seed
        )
        files = PretrainedFiles(settings.vggish, settings.vggish_pca)
        try:
            report = write_extractor_set(
                settings.extractors, folder, settings.timing, files, head_training=head_training
            )
        except CheckpointError as error:
            raise InputError(str(error)) from None
        return {"set": settings.extractors, **report}

    report = train_extractors(
        train_clips,
        held_out_clips,
        folder,
        num_classes,
        settings.extractor_epochs,
        seed=settings.seed,
    )
    return {"set": TRAINABLE, **report}


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
