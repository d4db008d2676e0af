"""Checkpoints: plain tensors and plain data only, read with ``torch.load(weights_only=True)``.

Two kinds, both written by ``train/`` and read by the torch backend and ``python -m export``:

- a LoCo checkpoint (``loco.pt``, ``runs/NAME/best.pt``): ``config`` (a ``Config`` as a dict),
  ``class_names``, ``model`` and, when written during training, ``ema`` state dicts (plus
  optimiser state);
- an extractors checkpoint (``extractors.pt``): the ``step`` both extractors cut (``StepSpec`` as
  a dict), and per modality (``audio``, ``visual``) its encoder's state dict (fp16) and, under
  ``networks``, the encoder's class name and constructor options (``EXTRACTOR_NETWORKS``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..config import Config, ConfigError, config_from_dict
from ..features.efficientnet_lite import EfficientNetLite0, VisualBackbone
from ..features.map_head import untrained_visual_map_head
from ..features.networks import AudioEncoder, VisualEncoder
from ..features.steps import StepSpec
from ..features.vggish import empty_audio_vggish
from .loco import LoCo


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model it is loaded into."""


# encoder class name -> builder from (the step it cuts, its stored constructor options)
EXTRACTOR_NETWORKS: dict[str, Callable[[StepSpec, dict], nn.Module]] = {
    "AudioEncoder": lambda spec, options: AudioEncoder(spec.sample_rate, **options),
    "VisualEncoder": lambda spec, options: VisualEncoder(spec.frames_per_step, **options),
    "VisualBackbone": lambda spec, options: VisualBackbone(EfficientNetLite0()),
    "AudioVGGish": lambda spec, options: empty_audio_vggish(**options),
    "VisualMapHead": lambda spec, options: untrained_visual_map_head(**options),
}


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
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({type(error).__name__}: {error}); "
            "it must be a loco-stream checkpoint saved by train/"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


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


def save_extractors(
    path: str | Path, spec: StepSpec, encoders: dict[str, nn.Module], options: dict[str, dict]
) -> None:
    """Write an extractors checkpoint: per modality (``audio``, ``visual``) the encoder's weights
    in fp16, its class name and ``options`` (its constructor's keywords besides the step's)."""
    state = {
        "step": dataclasses.asdict(spec),
        "networks": {
            modality: {"name": type(encoder).__name__, "options": options[modality]}
            for modality, encoder in encoders.items()
        },
        **{modality: half_precision(e.state_dict()) for modality, e in encoders.items()},
    }
    save_checkpoint(path, state)


def load_extractors(path: str | Path) -> tuple[dict[str, nn.Module], StepSpec]:
    """The encoders of an extractors checkpoint (modality -> module, eval mode) and their step."""
    state = load_checkpoint(path)
    if "step" not in state or "networks" not in state:
        raise CheckpointError(
            f"extractors checkpoint {path} records no step or networks (written before they were "
            "stored): train the extractors again with `python -m train.extractors`"
        )
    try:
        spec = StepSpec(**state["step"])
    except TypeError as error:
        raise CheckpointError(f"extractors checkpoint {path}: bad step ({error})") from None
    encoders = {}
    for modality in ("audio", "visual"):
        network = state["networks"].get(modality, {})
        build = EXTRACTOR_NETWORKS.get(network.get("name"))
        if build is None or modality not in state:
            raise CheckpointError(
                f"extractors checkpoint {path}: no known {modality} network (it names "
                f"{network.get('name')!r}; known: {sorted(EXTRACTOR_NETWORKS)})"
            )
        encoder = build(spec, network.get("options", {}))
        try:
            encoder.load_state_dict(state[modality])
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(
                f"extractors checkpoint {path}: the {modality} weights do not fit "
                f"{network['name']}({network.get('options', {})}): {first}"
            ) from None
        encoders[modality] = encoder.eval()
    return encoders, spec
