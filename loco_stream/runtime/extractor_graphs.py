"""The two per-step extractor graphs of a folder, without a window graph: an extractor set.

``python -m train.extractor_sets NAME --out DIR`` writes one (``audio_extractor.onnx`` and
``visual_extractor.onnx``, each with its embedded metadata: feature size and the ``StepSpec`` it
cuts); ``python -m train.extract_features`` runs it over a folder of videos. A model directory
holds the same two graphs beside its window graph and is opened with ``model_dir.StepExtractors``,
which also checks them against the directory's card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import AUDIO_GRAPH, VISUAL_GRAPH, ExtractorInfo
from ..features.steps import Step, StepSpec
from . import Backend, open_backend


class ExtractorSetError(ValueError):
    """A folder that does not hold a usable pair of extractor graphs; the message says why."""


def _step_of(graph: Backend, path: Path) -> tuple[StepSpec, int]:
    """The step a graph cuts and its feature size, from its embedded metadata."""
    fields = {k: v for k, v in graph.metadata.items() if k not in ("kind", "version")}
    try:
        info = ExtractorInfo.from_dict(fields, str(path))
        return info.step, info.feature_dim
    except ValueError as error:
        raise ExtractorSetError(
            f"{path} carries no usable extractor metadata ({error}); write the extractor set "
            "again with `python -m train.extractor_sets`"
        ) from None


class ExtractorPair:
    """(step) -> (visual (Dv,), audio (Da,)) features, by an audio and a visual graph."""

    audio_graph: Backend
    visual_graph: Backend

    def __call__(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """One step's (visual (Dv,), audio (Da,)) features."""
        visual = self.visual_graph.run({"frames": step.frames[None]})["features"][0]
        audio = self.audio_graph.run({"waveform": step.audio[None]})["features"][0]
        return visual, audio

    def close(self) -> None:
        self.audio_graph.close()
        self.visual_graph.close()


class ExtractorGraphs(ExtractorPair):
    """The extractor pair of a folder's two ONNX graphs (an extractor set)."""

    def __init__(self, folder: str | Path, backend: str = "onnxruntime", threads: int = 2):
        self.path = Path(folder)
        graphs: list[Backend] = []
        for name in (AUDIO_GRAPH, VISUAL_GRAPH):
            if not (self.path / name).is_file():
                for graph in graphs:
                    graph.close()
                raise ExtractorSetError(f"{self.path / name} is missing: not an extractor set")
            graphs.append(open_backend(backend, self.path / name, threads))
        self.audio_graph, self.visual_graph = graphs
        (audio_spec, self.audio_dim), (visual_spec, self.visual_dim) = (
            _step_of(self.audio_graph, self.path / AUDIO_GRAPH),
            _step_of(self.visual_graph, self.path / VISUAL_GRAPH),
        )
        if audio_spec != visual_spec:
            self.close()
            raise ExtractorSetError(
                f"the extractors of {self.path} cut different steps ({audio_spec} and "
                f"{visual_spec}); write the set again"
            )
        self.spec = audio_spec
