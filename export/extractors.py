"""Export the per-step feature extractors (audio, visual) to ONNX and check them against torch.

    audio_extractor.onnx    waveform (1, S) float32 -> features (1, Da)
    visual_extractor.onnx   frames (1, F, H, W, 3) uint8 -> features (1, Dv)

Their metadata (``loco_stream.bundle.ExtractorInfo``: network, feature size, and the step they
cut as a ``StepSpec``) is embedded in each graph and recorded in the model card, so the runtime
assembles exactly the inputs they were trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from export.graphs import TOLERANCE, ExportError, export_graph, verify_against_torch
from loco_stream.bundle import (
    AUDIO_GRAPH,
    VISUAL_GRAPH,
    ExtractorInfo,
    embedded_metadata,
    package_version,
)
from loco_stream.features.steps import StepSpec


def extractor_infos(
    audio_encoder: nn.Module,
    visual_encoder: nn.Module,
    spec: StepSpec,
    audio_dim: int,
    visual_dim: int,
) -> dict[str, ExtractorInfo]:
    """The metadata of both extractors: modality -> ``ExtractorInfo``."""
    return {
        "audio": ExtractorInfo("audio", type(audio_encoder).__name__, audio_dim, spec),
        "visual": ExtractorInfo("visual", type(visual_encoder).__name__, visual_dim, spec),
    }


def _check(encoder: nn.Module, path: Path, inputs: list[dict]) -> float:
    errors = verify_against_torch(encoder, path, inputs)
    worst = max(error.max_abs for error in errors.values())
    if not all(error.within(TOLERANCE) for error in errors.values()):
        raise ExportError(f"{path.name}: ONNX Runtime differs from torch by {worst:.2e}")
    return worst


def export_extractors(
    audio_encoder: nn.Module,
    visual_encoder: nn.Module,
    spec: StepSpec,
    out_dir: Path,
    audio_dim: int,
    visual_dim: int,
    seed: int = 0,
) -> dict[str, float]:
    """Write both extractor graphs into ``out_dir``; returns the max abs error of each vs torch."""
    rng = np.random.default_rng(seed)
    infos = extractor_infos(audio_encoder, visual_encoder, spec, audio_dim, visual_dim)
    version = package_version()

    def waveform() -> dict:
        return {"waveform": (0.3 * rng.standard_normal((1, spec.samples_per_window))).astype("f4")}

    def frames() -> dict:
        size = (1, spec.frames_per_step, spec.frame_size, spec.frame_size, 3)
        return {"frames": rng.integers(0, 256, size, dtype=np.uint8)}

    audio_path = export_graph(
        audio_encoder.eval(),
        waveform(),
        ["features"],
        out_dir / AUDIO_GRAPH,
        embedded_metadata(infos["audio"], version),
    )
    visual_path = export_graph(
        visual_encoder.eval(),
        frames(),
        ["features"],
        out_dir / VISUAL_GRAPH,
        embedded_metadata(infos["visual"], version),
    )
    return {
        AUDIO_GRAPH: _check(audio_encoder, audio_path, [waveform() for _ in range(3)]),
        VISUAL_GRAPH: _check(visual_encoder, visual_path, [frames() for _ in range(3)]),
    }
