"""A model directory opened on a backend: the two step extractors and the window graph, to run.

The directory's format (file names, metadata, hashes) and its checks belong to ``bundle``; this
module opens what ``bundle.read_bundle`` verified. The ``torch`` backend runs the window graph
from the checkpoint beside the graphs (``loco.pt``) in torch and the extractors in ONNX Runtime on
the CPU: a development path to compare a checkpoint with its export, not a faster one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import (
    AUDIO_GRAPH,
    OFFLINE_STEP_GRAPH,
    REEXPORT,
    STEP_GRAPH,
    VISUAL_GRAPH,
    WINDOW_CHECKPOINT,
    WINDOW_GRAPHS,
    DamagedFileError,
    MismatchError,
    MissingFileError,
    ModelCard,
    ModelDirError,
    WindowInfo,
    read_bundle,
    read_card,
    resolve_dir,
    verify_files,
)
from .features.steps import Step, StepSpec
from .limits import check
from .runtime import Backend, BackendUnavailable, GraphLoadError, open_backend
from .runtime.extractor_graphs import ExtractorPair

__all__ = ["ModelDir", "ModelDirError", "StepExtractors", "WindowInfo"]


def _open_graph(path: Path, backend: str, threads: int) -> Backend:
    try:
        return open_backend(backend, path, threads)
    except GraphLoadError as error:
        raise DamagedFileError(path, f"cannot be loaded ({error}); {REEXPORT}") from None


class StepExtractors(ExtractorPair):
    """The two per-step extractor graphs of a model directory and the step they cut.

    ``backend`` ``torch`` runs them in ONNX Runtime on the CPU (there is no torch extractor path).
    """

    def __init__(
        self, path: str | Path | None = None, backend: str = "onnxruntime", threads: int = 2
    ):
        self.path = resolve_dir(path)
        self.card: ModelCard = read_bundle(self.path, [AUDIO_GRAPH, VISUAL_GRAPH])
        backend = "onnxruntime" if backend == "torch" else backend
        self.audio_graph = _open_graph(self.path / AUDIO_GRAPH, backend, threads)
        try:
            self.visual_graph = _open_graph(self.path / VISUAL_GRAPH, backend, threads)
        except Exception:
            self.audio_graph.close()
            raise
        self.spec: StepSpec = self.card.extractors["audio"].step
        self.audio_dim = self.card.extractors["audio"].feature_dim
        self.visual_dim = self.card.extractors["visual"].feature_dim


def _open_torch_window(path: Path, card: ModelCard, threads: int) -> Backend:
    """The window graph of ``path/loco.pt`` in torch, checked to be the card's network."""
    try:  # torch: only when asked for
        from .model.checkpoint import CheckpointError
        from .runtime.torch_backend import TorchBackend
    except ImportError as error:
        raise BackendUnavailable(
            f"the torch backend needs torch: pip install -e '.[train]' [{error}]"
        ) from error
    checkpoint = path / WINDOW_CHECKPOINT
    window = card.window
    try:
        backend = TorchBackend.from_checkpoint(
            checkpoint, threads=threads, window=window.window, hop_steps=window.hop_steps
        )
    except CheckpointError as error:
        raise DamagedFileError(checkpoint, f"{error}; {REEXPORT}") from None
    got = backend.info
    if (tuple(got.classes), got.model) != (window.classes, window.model):
        backend.close()
        what = "classes" if tuple(got.classes) != window.classes else "network (model config)"
        raise MismatchError(checkpoint, f"its {what} differ from model_card.json's; {REEXPORT}")
    return backend


class ModelDir:
    """The extractors, the window graph and (where the directory has one) the step graph of a
    model directory, on one backend, verified.

    ``precision`` picks the window graph ONNX Runtime runs: ``fp32`` (``loco.onnx``), ``fp16``
    (``loco_fp16.onnx``) or ``int8`` (``loco_int8.onnx``, Q/DQ); a TensorRT engine has its
    precision built in (``export/to_trt.py``). The step graph (``loco_step.onnx``, fp32) is what
    the stream runs when it exists; ``step_graph`` is None without one, with the ``torch``
    backend, and with ``use_step_graph=False``.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        backend: str = "onnxruntime",
        threads: int = 2,
        precision: str = "fp32",
        use_step_graph: bool = True,
    ):
        if precision not in WINDOW_GRAPHS:
            raise ValueError(f"precision must be one of {list(WINDOW_GRAPHS)}, not {precision!r}")
        check("threads", threads)
        self.path = resolve_dir(path)
        window_file = WINDOW_CHECKPOINT if backend == "torch" else WINDOW_GRAPHS[precision]
        card = read_card(self.path)
        if backend == "torch" and WINDOW_CHECKPOINT not in card.files:
            raise MissingFileError(
                self.path / WINDOW_CHECKPOINT,
                "the torch backend runs the checkpoint beside the graphs, and this model "
                "directory has none; export it with `python -m export --checkpoint LOCO.pt`",
            )
        steps = use_step_graph and backend != "torch" and STEP_GRAPH in card.files
        if backend == "tensorrt":  # engines built before the step graph existed: windows
            steps = steps and (self.path / STEP_GRAPH).with_suffix(".engine").is_file()
        # StepExtractors verifies its own two graphs
        verify_files(self.path, card, [window_file] + ([STEP_GRAPH] if steps else []))
        self.card = card
        self.extractors = StepExtractors(self.path, backend, threads)
        self.step_graph: Backend | None = None
        self._offline_graph: Backend | None = None
        self._opens = (backend, threads)
        try:
            if backend == "torch":
                self.window_graph = _open_torch_window(self.path, self.card, threads)
            else:
                self.window_graph = _open_graph(self.path / window_file, backend, threads)
            if steps:
                self.step_graph = _open_graph(self.path / STEP_GRAPH, backend, threads)
        except Exception:
            self.extractors.close()
            if hasattr(self, "window_graph"):
                self.window_graph.close()
            raise
        self.spec = self.extractors.spec
        self.info: WindowInfo = self.card.window

    def offline_step_graph(self) -> Backend | None:
        """The step graph whole clips run through (``loco_step_offline.onnx``, many steps a
        call, opened on first use), or the stream's when the directory has no such graph; None
        without a step graph."""
        if self.step_graph is None or OFFLINE_STEP_GRAPH not in self.card.files:
            return self.step_graph
        if self._offline_graph is None:
            verify_files(self.path, self.card, [OFFLINE_STEP_GRAPH])
            self._offline_graph = _open_graph(self.path / OFFLINE_STEP_GRAPH, *self._opens)
        return self._offline_graph

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
        for graph in (self.step_graph, self._offline_graph):
            if graph is not None:
                graph.close()
        self.extractors.close()

    def __enter__(self) -> ModelDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
