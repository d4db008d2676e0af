"""A tiny, randomly initialised model directory (``python -m export`` of tiny random checkpoints)
for tests that need one fast."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
from pathlib import Path

import torch

from export.__main__ import main as export_main
from loco_stream.config import Config, DataConfig, ModelConfig
from loco_stream.features.networks import AudioEncoder, VisualEncoder
from loco_stream.features.steps import StepSpec
from loco_stream.model import LoCo
from loco_stream.model.checkpoint import save_checkpoint, save_extractors

TINY_SPEC = StepSpec(step_seconds=0.25, sample_rate=16000, frames_per_step=4, frame_size=32)


def tiny_model_config(**overrides) -> ModelConfig:
    """A LoCo small enough to train, export and test in seconds; ``overrides`` change any field."""
    values = dict(
        visual_dim=8,
        audio_dim=8,
        num_classes=3,
        window=32,
        embed_dim=16,
        head_dim=16,
        num_heads=2,
        num_encoder_blocks=1,
        encoder_radius=3,
        num_levels=3,
        regression_ranges=[[0, 4], [4, 8], [8, 1000]],
        cdp_radius=3,
        lcc_dim=8,
        drop_path=0.0,
        position_encoding="none",  # as models are trained now: it has a step graph
    )
    return ModelConfig(**{**values, **overrides})


def tiny_config(num_classes: int = 3, window: int = 32) -> Config:
    model = tiny_model_config(num_classes=num_classes, window=window)
    return Config(model=model, data=DataConfig(step_seconds=0.25, step_offset=0.125))


def save_tiny_checkpoints(
    folder: Path, seed: int = 0, feature_stats: dict | None = None
) -> tuple[Path, Path]:
    """A random tiny LoCo checkpoint (standardising its inputs with ``feature_stats`` if given)
    and tiny extractors checkpoint in ``folder``."""
    torch.manual_seed(seed)
    config = tiny_config()
    if feature_stats:
        config.model = dataclasses.replace(config.model, feature_stats=feature_stats)
    model = LoCo(config.model).eval()
    names = [f"class {i}" for i in range(config.model.num_classes)]
    folder.mkdir(parents=True, exist_ok=True)
    loco = folder / "loco.pt"
    save_checkpoint(
        loco, {"model": model.state_dict(), "config": config.to_dict(), "class_names": names}
    )
    encoders = {
        "audio": AudioEncoder(TINY_SPEC.sample_rate, 8, width=4),
        "visual": VisualEncoder(TINY_SPEC.frames_per_step, 8, width=4),
    }
    extractors = folder / "extractors.pt"
    options = {"dim": 8, "width": 4}
    save_extractors(extractors, TINY_SPEC, encoders, {"audio": options, "visual": options})
    return loco, extractors


def make_tiny_model_dir(
    out_dir: Path, seed: int = 0, hop: int = 4, feature_stats: dict | None = None
) -> Path:
    """Export a random tiny LoCo and tiny extractors into ``out_dir``; returns ``out_dir``."""
    loco, _ = save_tiny_checkpoints(out_dir, seed, feature_stats)
    status = export_main(["--checkpoint", str(loco), "--out", str(out_dir), "--hop", str(hop)])
    assert status == 0, f"python -m export of the tiny model exited {status}"
    return out_dir


SESSION_DIR_NAME = "tiny_model"


def session_tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model directory of this test session, exported on first use only (about 30 s):
    once for all pytest-xdist workers, which share their base folders' parent, under a lock."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, above each worker's own
    folder, done = root / SESSION_DIR_NAME, root / f"{SESSION_DIR_NAME}.done"
    with open(root / f"{SESSION_DIR_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for the export, then reuses it
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed export left
            folder.mkdir()
            make_tiny_model_dir(folder)
            done.touch()
    return folder
