"""The torch window graph of a checkpoint as a ``Backend``: the development backend.

    backend = TorchBackend.from_checkpoint(Path("runs/x/best.pt"))  # open_backend("torch", path)
    outputs = backend.run({"visual": v, "audio": a, "mask": m})  # "scores", "segments"

It runs ``WindowGraph`` in eval mode with the same inputs, outputs and metadata as the exported
``loco.onnx`` (the export builds that metadata with ``window_info`` below), so the stream can run
on a checkpoint before it is exported and the two can be compared output for output. A model
directory runs it with ``--backend torch`` from its ``loco.pt``. This module imports torch: the
runtime loads it only when the ``torch`` backend is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bundle import DEFAULT_HOP_STEPS, WindowInfo, package_version
from ..config import Config, ConfigError, ModelConfig
from ..model import LoCo, WindowGraph, point_grid
from ..model.checkpoint import load_model
from ..model.encoder import MAX_POSITIONS
from .base import Backend, TensorSpec

INPUT_NAMES = ("visual", "audio", "mask")
OUTPUT_NAMES = ("scores", "segments")


def check_window(config: ModelConfig, window: int, hop_steps: int = DEFAULT_HOP_STEPS) -> None:
    """Raise ``ConfigError`` unless a graph of ``window`` steps, run every ``hop_steps``, fits."""
    if window <= 0 or window % config.max_stride or window > MAX_POSITIONS:
        raise ConfigError(
            f"window {window} must be a positive multiple of the top level's stride "
            f"{config.max_stride} (2**(num_levels-1)), at most {MAX_POSITIONS} steps"
        )
    if not 1 <= hop_steps <= window:
        raise ConfigError(f"hop {hop_steps} must be between 1 and the window ({window} steps)")


def window_graph(model: LoCo, window: int) -> WindowGraph:
    """The served graph of ``model`` for windows of ``window`` steps (LoCo is length-agnostic:
    only the point grid that turns offsets into segments depends on T)."""
    check_window(model.config, window)
    graph = WindowGraph(model).eval()
    graph.positions, graph.strides = point_grid(window, model.config.num_levels)  # (N,), (N,)
    return graph


def window_info(
    config: Config,
    class_names: list[str],
    window: int,
    hop_steps: int = DEFAULT_HOP_STEPS,
    step_hop: int = 0,
) -> WindowInfo:
    """The metadata of the window graph of ``config``'s network for windows of ``window`` steps
    (and of its step graph, run ``step_hop`` steps a call; 0: none)."""
    return WindowInfo(
        classes=tuple(class_names),
        window=window,
        hop_steps=hop_steps,
        step_seconds=config.data.step_seconds,
        step_offset=config.data.step_offset,
        decode=config.decode,
        model=config.model,
        step_hop=step_hop,
    )


def window_specs(config: ModelConfig, window: int) -> dict[str, TensorSpec]:
    """Inputs of the window graph: visual (1, T, Dv), audio (1, T, Da), mask (1, T), float32."""
    f32 = np.dtype(np.float32)
    return {
        "visual": TensorSpec((1, window, config.visual_dim), f32),
        "audio": TensorSpec((1, window, config.audio_dim), f32),
        "mask": TensorSpec((1, window), f32),
    }


class TorchBackend(Backend):
    """A LoCo network's ``WindowGraph`` in torch, on the CPU (``threads``) or a CUDA device.

    ``window`` defaults to the model's ``config.model.window``. ``threads`` sets torch's
    process-wide intra-op thread count. ``from_checkpoint`` opens a trained checkpoint.
    """

    def __init__(
        self,
        model: LoCo,
        config: Config,
        class_names: list[str],
        device: str = "cpu",
        threads: int = 2,
        window: int | None = None,
        hop_steps: int = DEFAULT_HOP_STEPS,
    ) -> None:
        window = config.model.window if window is None else window
        check_window(config.model, window, hop_steps)
        self._device = torch.device(device)
        self.graph: WindowGraph | None = window_graph(model, window).to(self._device)
        if self._device.type == "cpu":
            torch.set_num_threads(threads)
            plural = "s" if threads != 1 else ""
            self.device = f"CPU (torch {torch.__version__}, {threads} thread{plural})"
        else:
            gpu = torch.cuda.get_device_name(self._device)
            self.device = f"CUDA: {gpu} (torch {torch.__version__})"
        self.name = "torch"
        self.input_specs = window_specs(config.model, window)
        self.output_names = list(OUTPUT_NAMES)
        self.info = window_info(config, class_names, window, hop_steps)
        self.metadata = {"kind": "window", "version": package_version(), **self.info.to_dict()}

    @classmethod
    def from_checkpoint(cls, path: Path, **options: Any) -> TorchBackend:
        """Open a LoCo checkpoint (EMA weights when it has them); ``options`` as ``__init__``."""
        model, config, class_names = load_model(path)
        return cls(model, config, class_names, **options)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.graph is None:
            raise RuntimeError("torch backend is closed")
        with torch.inference_mode():
            tensors = [torch.from_numpy(inputs[name]).to(self._device) for name in INPUT_NAMES]
            outputs = self.graph(*tensors)  # (1, N, C), (1, N, 2) or (1, N, C, 2)
        return {name: out.cpu().numpy() for name, out in zip(OUTPUT_NAMES, outputs, strict=True)}

    def close(self) -> None:
        self.graph = None
