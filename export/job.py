"""One export of a model directory (`python -m export`): what it works from (`load_job`), the
formats it writes (`FORMATS`, each a stage checked as it is written) and the card rewritten after
each (`run`); `export_as_asked` is the command's run. ``train`` exports through `load_job` and
`export_model_dir`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from export import engines
from export.batched import write_batched_graphs
from export.extractors import export_extractors, extractor_infos
from export.graphs import ExportError, check_graph, convert_to_fp16
from export.quantize import (
    CalibrationError,
    calibration_videos,
    calibration_windows,
    quantize_window_graph,
)
from export.step_graph import export_step_graph, step_hop_for
from export.window_graph import apply_config_file, export_and_verify, verify_fp16
from loco_stream.bundle import (
    AUDIO_GRAPH,
    CARD,
    DEFAULT_HOP_STEPS,
    DEFAULT_MODEL_DIR,
    EXTRACTOR_CHECKPOINT,
    EXTRACTOR_GRAPHS,
    OFFLINE_STEP_GRAPH,
    OFFLINE_STEP_HOP,
    STEP_GRAPH,
    VISUAL_GRAPH,
    WINDOW_CHECKPOINT,
    WINDOW_FP16_GRAPH,
    WINDOW_GRAPH,
    WINDOW_INT8_GRAPH,
    ModelCard,
    ModelDirError,
    embedded_metadata,
    file_entry,
    graph_signature,
    load_graph,
    sha256_file,
    write_card,
)
from loco_stream.config import Config, ConfigError
from loco_stream.features.steps import StepSpec
from loco_stream.model import LoCo
from loco_stream.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_extractors,
    load_model,
    save_checkpoint,
)
from loco_stream.runtime import open_backend
from loco_stream.runtime.torch_backend import check_window, window_info

Say = Callable[[str], None]


@dataclass
class Job:
    """Everything one export works from, and the files it has written so far."""

    model: LoCo
    config: Config
    class_names: list[str]
    encoders: dict[str, nn.Module]  # modality -> extractor network
    spec: StepSpec
    checkpoint: Path
    extractors_checkpoint: Path
    out: Path
    window: int
    hop: int
    step_hop: int = 0  # steps a call of the step graph; 0: the model gets none (why: no_step)
    no_step: str = ""
    calib: Path | None = None  # videos for int8 calibration
    calib_clips: int = 40
    results: dict = field(default_factory=dict)
    written: list[str] = field(default_factory=list)  # file names, in order

    def card(self) -> ModelCard:
        """The card of what has been written so far."""
        info = window_info(self.config, self.class_names, self.window, self.hop, self.step_hop)
        extractors = extractor_infos(
            self.encoders["audio"],
            self.encoders["visual"],
            self.spec,
            self.config.model.audio_dim,
            self.config.model.visual_dim,
        )
        files = {name: file_entry(self.out / name) for name in self.written}
        return ModelCard(info, extractors, files, results=self.results)


def write_onnx(job: Job, say: Say) -> None:
    """The three fp32 graphs, each checked against torch, and the checkpoints they came from."""
    model = job.config.model
    export_and_verify(
        job.model, job.config, job.class_names, job.out, job.window, job.hop, say, job.step_hop
    )
    errors = export_extractors(
        job.encoders["audio"],
        job.encoders["visual"],
        job.spec,
        job.out,
        audio_dim=model.audio_dim,
        visual_dim=model.visual_dim,
    )
    for name, error in errors.items():
        say(f"      {job.out / name}: ONNX Runtime vs torch max abs error {error:.3g}  OK")
    for modality, name in EXTRACTOR_GRAPHS.items():
        _, outputs = graph_signature(load_graph(job.out / name))
        gives, takes = outputs["features"][0][-1], getattr(model, f"{modality}_dim")
        if gives != takes:
            raise ExportError(
                f"{job.extractors_checkpoint}'s {modality} network gives {gives}-d features but "
                f"{job.checkpoint} takes {takes}-d {modality} features: they were not trained "
                "together"
            )
    job.written += [WINDOW_GRAPH, AUDIO_GRAPH, VISUAL_GRAPH]
    if job.step_hop:
        info = job.card().window
        for name, hop in ((STEP_GRAPH, job.step_hop), (OFFLINE_STEP_GRAPH, OFFLINE_STEP_HOP)):
            export_step_graph(job.model, info, job.out, hop, say, name)
            job.written.append(name)
    else:
        say(f"      no step graph ({STEP_GRAPH}): {job.no_step}")
    write_checkpoints(job, say)


def write_checkpoints(job: Job, say: Say) -> None:
    """``loco.pt`` (config, class names and the exported weights only) and ``extractors.pt``
    beside the graphs, unless they are the very files exported from."""
    target = job.out / WINDOW_CHECKPOINT
    if not target.exists() or not target.samefile(job.checkpoint):
        state = load_checkpoint(job.checkpoint)
        weights = state["ema"] if "ema" in state else state["model"]
        slim = {"model": weights, "config": state["config"], "class_names": job.class_names}
        save_checkpoint(target, slim)
        say(f"      {target} (weights, config and class names of {job.checkpoint.name})")
    target = job.out / EXTRACTOR_CHECKPOINT
    if not target.exists() or not target.samefile(job.extractors_checkpoint):
        shutil.copyfile(job.extractors_checkpoint, target)
        say(f"      {target}")
    job.written += [WINDOW_CHECKPOINT, EXTRACTOR_CHECKPOINT]


def write_fp16(job: Job, say: Say) -> None:
    """``loco_fp16.onnx``: what a strongly typed TensorRT FP16 build takes."""
    path = convert_to_fp16(job.out / WINDOW_GRAPH, job.out / WINDOW_FP16_GRAPH)
    say(f"      {path} ({path.stat().st_size / 2**20:.1f} MiB); error vs torch:")
    verify_fp16(job.model, job.config, path, job.window, say)
    problems = check_graph(path, 0)
    if problems:
        raise ExportError(f"{path} is not ready for TensorRT:\n  - " + "\n  - ".join(problems))
    job.written.append(WINDOW_FP16_GRAPH)


def write_int8(job: Job, say: Say) -> None:
    """``loco_int8.onnx``: Q/DQ nodes calibrated on feature windows of ``--calib``'s videos."""
    videos = calibration_videos(job.calib, job.calib_clips)
    windows = calibration_windows(job.out, videos, job.window)
    say(f"      {len(windows)} calibration windows from {len(videos)} videos in {job.calib}")
    card = job.card()
    path = quantize_window_graph(
        job.out / WINDOW_GRAPH,
        job.out / WINDOW_INT8_GRAPH,
        windows,
        embedded_metadata(card.window, card.version),
        say,
    )
    problems = check_graph(path, 0)
    if problems:
        raise ExportError(f"{path} is not ready for TensorRT:\n  - " + "\n  - ".join(problems))
    fp32 = open_backend("onnxruntime", job.out / WINDOW_GRAPH)
    int8 = open_backend("onnxruntime", path)
    try:
        worst = max(
            float(np.max(np.abs(fp32.run(w)["scores"] - int8.run(w)["scores"])))
            for w in windows[:8]
        )
    finally:
        fp32.close()
        int8.close()
    say(f"      scores vs fp32 on {min(8, len(windows))} calibration windows: max abs {worst:.3g}")
    job.written.append(WINDOW_INT8_GRAPH)


def write_batch(job: Job, say: Say) -> None:
    """The three graphs with a free batch axis, for the multi-stream engine."""
    card = job.card()
    job.written += write_batched_graphs(job.model, job.encoders, card, job.out, say=say)


@dataclass(frozen=True)
class Format:
    """One row of the format table."""

    name: str
    flag: str
    files: str
    write: Callable[[Job, Say], None]


FORMATS = (
    Format(
        "onnx",
        "",
        "loco.onnx, loco_step[_offline].onnx (streamable models), the extractors, the checkpoints",
        write_onnx,
    ),
    Format("fp16", "--fp16", WINDOW_FP16_GRAPH, write_fp16),
    Format("int8", "--int8", WINDOW_INT8_GRAPH, write_int8),
    Format("batch", "--batch", "loco_batch.onnx and the extractors' *_batch.onnx", write_batch),
)


def replaced_work(out: Path, checkpoint: Path, extractors: Path | None = None) -> str | None:
    """What exporting ``checkpoint`` into ``out`` would replace, or None: nothing there but the
    export's own inputs, or a model directory of the same weights (a re-export, which keeps its
    results)."""
    if not out.is_dir() or not checkpoint.is_file():  # a missing checkpoint is load_job's to say
        return None
    if (out / CARD).is_file():
        try:
            card = json.loads((out / CARD).read_text(encoding="utf-8"))
            if card["files"][WINDOW_CHECKPOINT]["sha256"] == sha256_file(checkpoint):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return f"--out {out} holds a model of other weights (its {CARD})"
    inputs = {checkpoint.resolve(), (extractors or checkpoint.parent / EXTRACTOR_CHECKPOINT)}
    inputs = {path.resolve() for path in inputs}
    checkpoints = (WINDOW_CHECKPOINT, EXTRACTOR_CHECKPOINT)  # the files of the folder it writes
    clashes = sorted(
        path.name
        for path in out.iterdir()
        if (path.suffix in (".onnx", ".engine") or path.name in checkpoints)
        and path.resolve() not in inputs
    )
    if not clashes:
        return None
    shown = ", ".join(clashes[:4]) + (", ..." if len(clashes) > 4 else "")
    return f"--out {out} holds model files of other weights ({shown})"


def previous_results(out: Path, checkpoint: Path) -> dict:
    """The results in ``out``'s card when it describes the same weights (a re-export)."""
    try:
        card = json.loads((out / CARD).read_text(encoding="utf-8"))
        recorded = card["files"][WINDOW_CHECKPOINT]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return dict(card.get("results") or {}) if recorded == sha256_file(checkpoint) else {}


def load_job(
    checkpoint: Path,
    out: Path,
    extractors: Path | None = None,
    window: int | None = None,
    hop: int = DEFAULT_HOP_STEPS,
    config_file: Path | None = None,
    results: dict | None = None,
    calib: Path | None = None,
    calib_clips: int = 40,
) -> Job:
    """Load and check everything an export needs (``extractors`` defaults to the extractors.pt
    beside ``checkpoint``); raises CheckpointError, ConfigError or CalibrationError."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    model, config, names = load_model(checkpoint)
    extractors = extractors or checkpoint.parent / EXTRACTOR_CHECKPOINT
    if not extractors.is_file():
        raise CheckpointError(
            f"extractors checkpoint {extractors} does not exist: pass --extractors EXTRACTORS.pt "
            "(written by `python -m train.extractors`)"
        )
    if config_file is not None:
        config = apply_config_file(config, config_file)
    encoders, spec = load_extractors(extractors)
    window = config.model.window if window is None else window
    check_window(config.model, window, hop)
    if calib is not None:
        calibration_videos(calib, calib_clips)  # refuse a folder without videos before any work
    out.mkdir(parents=True, exist_ok=True)
    results = results or previous_results(out, checkpoint)
    job = Job(model, config, names, encoders, spec, checkpoint, extractors, out, window, hop)
    job.step_hop, job.no_step = step_hop_for(config.model, hop)
    job.calib, job.calib_clips, job.results = calib, calib_clips, results
    try:
        job.card().check_metadata()  # the two checkpoints fit together, before anything is written
    except ValueError as error:
        raise ConfigError(f"{checkpoint} and {extractors} do not fit: {error}") from None
    return job


def read_results(path: Path | None) -> dict:
    """The ``--results`` JSON object ({} without one)."""
    if path is None:
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"--results {path}: {error}") from None
    if not isinstance(results, dict):
        raise ConfigError(f"--results {path} must hold a JSON object")
    return results


def run(job: Job, formats: list[Format]) -> None:
    """Write ``formats`` into ``job.out`` under one progress bar, the card after each."""

    def say(line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    for number, fmt in enumerate(tqdm(formats, desc="export", unit="format"), 1):
        say(f"[{number}/{len(formats)}] {fmt.name}: {fmt.files}")
        fmt.write(job, say)
        path = write_card(job.out, job.card())
        say(f"      {path}: {len(job.written)} files, hashes and signatures verified")


def export_model_dir(job: Job, fp16: bool = False, int8: bool = False, batch: bool = False) -> Path:
    """The Python entry point (``train.default_model`` uses it): the onnx format, and fp16,
    int8 and batch when asked; returns the model directory."""
    wanted = {"onnx": True, "fp16": fp16, "int8": int8, "batch": batch}
    run(job, [fmt for fmt in FORMATS if wanted[fmt.name]])
    return job.out


def export_as_asked(args: argparse.Namespace) -> int:
    """``python -m export`` once its arguments are parsed (`export.__main__`); returns the exit
    status."""
    args.checkpoint = args.checkpoint or DEFAULT_MODEL_DIR / WINDOW_CHECKPOINT
    replaced = None if args.force else replaced_work(args.out, args.checkpoint, args.extractors)
    if replaced is not None:
        print(
            f"error: {replaced}; exporting would replace its files: give a new folder, or "
            "--force to replace them",
            file=sys.stderr,
        )
        return 2
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")  # torch.export
    try:
        job = load_job(
            args.checkpoint,
            args.out,
            args.extractors,
            args.window,
            args.hop,
            args.config,
            read_results(args.results),
            args.calib,
            args.calib_clips,
        )
    except (CheckpointError, ConfigError, CalibrationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{args.checkpoint}: {job.config.model.variant}, {len(job.class_names)} classes, "
        f"window {job.window} steps, hop {job.hop} steps of {job.config.data.step_seconds:g} s",
        flush=True,
    )
    try:
        export_model_dir(job, args.fp16, args.int8, args.batch)
    except CalibrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ExportError, ModelDirError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.trt:
        precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
        status = engines.build_model_dir(job.out, precision, say=engines.report)
        if status:
            return status
    print(f"done: {job.out}", flush=True)
    return 0
