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


def _open_graph(path: Path, backend: str, threads: int, kind: str) -> Backend:
    """Open one graph of a model directory and check its metadata says it is a ``kind`` graph."""
    if not path.is_file():
        raise ModelDirError(
            f"{path} is missing; export the model directory with `python export/to_onnx.py`"
        )
    try:
        graph = open_backend(backend, path, threads)
    except OSError as error:
        raise ModelDirError(f"{path} cannot be loaded: {error}") from None
    except ValueError as error:
        if "unknown backend" in str(error):
            raise
        raise ModelDirError(f"{path} cannot be loaded: {error}") from None
    if graph.metadata.get("kind") != kind:
        graph.close()
        raise ModelDirError(
            f"{path} is not a loco-stream {kind} graph (its metadata kind is "
            f"{graph.metadata.get('kind')!r}); re-export the model directory"
        )
    return graph


def _resolve(path: str | Path | None) -> Path:
    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if not folder.is_dir():
        hint = (
            "the package was installed without its default model; reinstall it or pass --model"
            if path is None
            else "pass a directory written by export/to_onnx.py"
        )
        raise ModelDirError(f"model directory {folder} does not exist ({hint})")
    return folder


class StepExtractors:
    """The two per-step extractor graphs of a model directory and the step they cut."""

    def __init__(
        self, path: str | Path | None = None, backend: str = "onnxruntime", threads: int = 2
    ):
        self.path = _resolve(path)
        self.audio_graph = _open_graph(self.path / AUDIO_GRAPH, backend, threads, "audio_extractor")
        self.visual_graph = _open_graph(
            self.path / VISUAL_GRAPH, backend, threads, "visual_extractor"
        )
        audio_meta, visual_meta = self.audio_graph.metadata, self.visual_graph.metadata
        if float(audio_meta["step_seconds"]) != float(visual_meta["step_seconds"]):
            raise ModelDirError(
                f"mismatched extractors in {self.path}: steps of {audio_meta['step_seconds']} s "
                f"(audio) and {visual_meta['step_seconds']} s (visual)"
            )
        self.spec = StepSpec(
            step_seconds=float(audio_meta["step_seconds"]),
            sample_rate=int(audio_meta["sample_rate"]),
            frames_per_step=int(visual_meta["frames_per_step"]),
            frame_size=int(visual_meta["frame_size"]),
        )
        self.audio_dim = int(audio_meta["feature_dim"])
        self.visual_dim = int(visual_meta["feature_dim"])

    def __call__(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """One step's (visual (Dv,), audio (Da,)) features."""
        visual = self.visual_graph.run({"frames": step.frames[None]})["features"][0]
        audio = self.audio_graph.run({"waveform": step.audio[None]})["features"][0]
        return visual, audio

    def close(self) -> None:
        self.audio_graph.close()
        self.visual_graph.close()


class ModelDir:
    """The extractors and the window graph of a model directory, on one backend, checked to fit."""

    def __init__(
        self, path: str | Path | None = None, backend: str = "onnxruntime", threads: int = 2
    ):
        self.path = _resolve(path)
        self.window_graph = _open_graph(self.path / WINDOW_GRAPH, backend, threads, "window")
        try:
            self.extractors = StepExtractors(self.path, backend, threads)
        except ModelDirError:
            self.window_graph.close()
            raise
        self.spec = self.extractors.spec
        self.info = self._check()

    def _check(self) -> WindowInfo:
        meta = self.window_graph.metadata
        visual_shape = self.window_graph.input_specs["visual"].shape  # (1, T, Dv)
        audio_shape = self.window_graph.input_specs["audio"].shape  # (1, T, Da)
        extractors = self.extractors
        if (extractors.visual_dim, extractors.audio_dim) != (visual_shape[2], audio_shape[2]):
            self.close()
            raise ModelDirError(
                f"mismatched graphs in {self.path}: the extractors give visual "
                f"{extractors.visual_dim} / audio {extractors.audio_dim} features but loco.onnx "
                f"expects {visual_shape[2]} / {audio_shape[2]}; export the extractors and the "
                "window graph from one model"
            )
        if float(meta["step_seconds"]) != self.spec.step_seconds:
            self.close()
            raise ModelDirError(
                f"mismatched step lengths in {self.path}: loco.onnx {meta['step_seconds']} s, "
                f"extractors {self.spec.step_seconds} s"
            )
        return WindowInfo(
            classes=list(meta["classes"]),
            window=int(meta["window"]),
            hop_steps=int(meta["hop_steps"]),
            step_seconds=self.spec.step_seconds,
            step_offset=float(meta["step_offset"]),
            visual_dim=extractors.visual_dim,
            audio_dim=extractors.audio_dim,
            decode=DecodeConfig(**meta["decode"]),
        )

    def step_features(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """One step's (visual (Dv,), audio (Da,)) features."""
        return self.extractors(step)

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
        self.window_graph.close()
        self.extractors.close()
