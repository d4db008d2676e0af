"""A model directory: the three exported graphs that make a deployable detector, checked together.

    loco.onnx               window graph: (visual (1,T,Dv), audio (1,T,Da), mask (1,T))
                            -> (scores (1,N,C), segments (1,N,2))
    audio_extractor.onnx    one step's waveform (1, S) float32 -> features (1, Da)
    visual_extractor.onnx   one step's frames (1, F, H, W, 3) uint8 -> features (1, Dv)

Each graph carries its ``loco_stream`` metadata (classes, step, window, hop, thresholds, version),
so nothing else is needed. The package ships one as its default model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DecodeConfig
from .features.steps import Step, StepSpec
from .runtime import Backend, open_backend

WINDOW_GRAPH = "loco.onnx"
AUDIO_GRAPH = "audio_extractor.onnx"
VISUAL_GRAPH = "visual_extractor.onnx"
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default_model"


class ModelDirError(ValueError):
    """A model directory with a missing or mismatched graph; the message says which."""


@dataclass
class WindowInfo:
    """What the host needs to know about the window graph (from its metadata)."""

    classes: list[str]
    window: int  # T
    hop_steps: int
    step_seconds: float
    step_offset: float
    visual_dim: int
    audio_dim: int
    decode: DecodeConfig


class ModelDir:
    """Opens the three graphs of a model directory on one backend and checks they fit together."""

    def __init__(
        self, path: str | Path | None = None, backend: str = "onnxruntime", threads: int = 2
    ):
        self.path = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if not self.path.is_dir():
            hint = (
                "the package was installed without its default model; reinstall it or pass --model"
                if path is None
                else "pass a directory written by export/to_onnx.py"
            )
            raise ModelDirError(f"model directory {self.path} does not exist ({hint})")
        missing = [
            g for g in (WINDOW_GRAPH, AUDIO_GRAPH, VISUAL_GRAPH) if not (self.path / g).is_file()
        ]
        if missing:
            raise ModelDirError(
                f"model directory {self.path} lacks {', '.join(missing)}; export all three graphs "
                "with `python export/to_onnx.py --out DIR`"
            )
        self.window_graph = self._open(WINDOW_GRAPH, backend, threads)
        self.audio_graph = self._open(AUDIO_GRAPH, backend, threads)
        self.visual_graph = self._open(VISUAL_GRAPH, backend, threads)
        self.info, self.spec = self._check()

    def _open(self, name: str, backend: str, threads: int) -> Backend:
        try:
            return open_backend(backend, self.path / name, threads)
        except (OSError, ValueError) as error:
            if isinstance(error, ValueError) and "unknown backend" in str(error):
                raise
            raise ModelDirError(f"{self.path / name} cannot be loaded: {error}") from None

    def _check(self) -> tuple[WindowInfo, StepSpec]:
        window_meta = self.window_graph.metadata
        audio_meta = self.audio_graph.metadata
        visual_meta = self.visual_graph.metadata
        for name, meta, kind in (
            (WINDOW_GRAPH, window_meta, "window"),
            (AUDIO_GRAPH, audio_meta, "audio_extractor"),
            (VISUAL_GRAPH, visual_meta, "visual_extractor"),
        ):
            if meta.get("kind") != kind:
                raise ModelDirError(
                    f"{self.path / name} is not a loco-stream {kind} graph (its metadata kind is "
                    f"{meta.get('kind')!r}); re-export the model directory"
                )
        visual_shape = self.window_graph.input_specs["visual"].shape  # (1, T, Dv)
        audio_shape = self.window_graph.input_specs["audio"].shape  # (1, T, Da)
        audio_out = int(audio_meta["feature_dim"])
        visual_out = int(visual_meta["feature_dim"])
        if (visual_out, audio_out) != (visual_shape[2], audio_shape[2]):
            raise ModelDirError(
                f"mismatched graphs in {self.path}: the extractors give visual {visual_out} / "
                f"audio {audio_out} features but loco.onnx expects {visual_shape[2]} / "
                f"{audio_shape[2]}; export the extractors and the window graph from one model"
            )
        steps = {float(m["step_seconds"]) for m in (window_meta, audio_meta, visual_meta)}
        if len(steps) != 1:
            raise ModelDirError(f"mismatched step lengths {sorted(steps)} s in {self.path}")
        spec = StepSpec(
            step_seconds=steps.pop(),
            sample_rate=int(audio_meta["sample_rate"]),
            frames_per_step=int(visual_meta["frames_per_step"]),
            frame_size=int(visual_meta["frame_size"]),
        )
        info = WindowInfo(
            classes=list(window_meta["classes"]),
            window=int(window_meta["window"]),
            hop_steps=int(window_meta["hop_steps"]),
            step_seconds=spec.step_seconds,
            step_offset=float(window_meta["step_offset"]),
            visual_dim=visual_out,
            audio_dim=audio_out,
            decode=DecodeConfig(**window_meta["decode"]),
        )
        return info, spec

    def step_features(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """One step's (visual (Dv,), audio (Da,)) features."""
        visual = self.visual_graph.run({"frames": step.frames[None]})["features"][0]
        audio = self.audio_graph.run({"waveform": step.audio[None]})["features"][0]
        return visual, audio

    def run_window(
        self, visual: np.ndarray, audio: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(1,T,Dv), (1,T,Da), (1,T) -> scores (1,N,C), segments (1,N,2) in window steps."""
        out = self.window_graph.run({"visual": visual, "audio": audio, "mask": mask})
        return out["scores"], out["segments"]

    @property
    def description(self) -> str:
        return f"{self.path} on {self.window_graph.device}"

    def close(self) -> None:
        for graph in (self.window_graph, self.audio_graph, self.visual_graph):
            graph.close()
