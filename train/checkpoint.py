"""Checkpoints: plain tensors and plain data only, loaded with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from loco_stream.config import Config, ConfigError, config_from_dict
from loco_stream.model import LoCo


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model it is loaded into."""


def half_precision(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with its floating-point tensors in fp16 (for shipped weights: half the size;
    ``load_state_dict`` casts them back to the model's fp32)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({type(error).__name__}: {error}); "
            "it must be a loco-stream checkpoint saved by train/"
        ) from None


def load_model(path: str | Path, use_ema: bool = True) -> tuple[LoCo, Config, list[str]]:
    """The trained network (EMA weights by default) in eval mode, its config and class names."""
    state = load_checkpoint(path)
    try:
        config = config_from_dict(state["config"])
        names = list(state["class_names"])
        weights = state["ema" if use_ema and "ema" in state else "model"]
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"checkpoint {path} lacks its config or weights: {error}") from None
    model = LoCo(config.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit its own config: {error}") from None
    return model.eval(), config, names
