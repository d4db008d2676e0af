"""The three graphs of a model directory with a free batch axis: one call serves many streams.

    loco_batch.onnx               visual (B,T,Dv), audio (B,T,Da), mask (B,T) -> scores (B,N,C),
                                  segments (B,N,2) or (B,N,C,2)
    audio_extractor_batch.onnx    waveform (B,S) float32 -> features (B,Da)
    visual_extractor_batch.onnx   frames (B,F,H,W,3) uint8 -> features (B,Dv)

``python -m export --batch`` writes them beside the batch-1 graphs (``write_batch``), from the
same torch modules, each checked with ``onnx.checker`` and against torch on a batch of
``CHECK_BATCH`` different inputs (the window batch mixes full and padded windows). B is dynamic
(1 to ``MAX_BATCH``): ONNX Runtime takes any B; the rows of a batch do not interact, so a stream's
outputs do not depend on the other streams it is batched with. The multi-stream engine
(``loco_stream.stream.batched``) uses these graphs when a model directory has them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.export import Dim

from export.graphs import (
    OPSET,
    TOLERANCE,
    ExportError,
    Inputs,
    report_errors,
    verify_against_torch,
)
from export.initializers import share_identical_initializers
from export.window_graph import window_inputs
from loco_stream.bundle import BATCH_GRAPHS, embedded_metadata, set_graph_metadata
from loco_stream.runtime.torch_backend import OUTPUT_NAMES, window_graph

MAX_BATCH = 256  # the largest batch the graphs declare (ONNX Runtime does not enforce it)
CHECK_BATCH = 3  # rows of the batches compared with torch

Say = Callable[[str], None]


def export_batched_graph(
    module: nn.Module, inputs: Inputs, output_names: tuple[str, ...], path: Path, metadata: dict
) -> Path:
    """Export ``module(*inputs.values())`` to ``path`` with dim 0 of every input free (dynamo,
    opset 18), ``metadata`` embedded."""
    batch = Dim("batch", min=1, max=MAX_BATCH)
    tensors = tuple(torch.from_numpy(array) for array in inputs.values())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name: batch will not be used")
            program = torch.onnx.export(
                module.eval(),
                tensors,
                dynamo=True,
                opset_version=OPSET,
                input_names=list(inputs),
                output_names=list(output_names),
                dynamic_shapes={name: {0: batch} for name in inputs},
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; its message says what failed
        raise ExportError(
            f"the dynamo exporter failed on {type(module).__name__} with a batch axis: {err}"
        ) from err
    model = program.model_proto
    share_identical_initializers(model)
    set_graph_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _stack(rows: list[Inputs]) -> Inputs:
    """One batch from inputs of one row each: (1, ...) arrays concatenated along dim 0."""
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def _check(module: nn.Module, path: Path, batches: list[Inputs], say: Say) -> None:
    errors = verify_against_torch(module, path, batches)
    failed = report_errors(errors, TOLERANCE, say)
    if failed:
        raise ExportError(
            f"{path}: ONNX Runtime disagrees with torch on {', '.join(failed)} beyond "
            f"{TOLERANCE:g} on batches of {CHECK_BATCH}"
        )


def write_batched_graphs(
    model: nn.Module,
    encoders: dict[str, nn.Module],
    card,  # loco_stream.bundle.ModelCard: the metadata each graph embeds
    out: Path,
    seed: int = 0,
    say: Say = print,
) -> list[str]:
    """Write the three batched graphs of ``card``'s model into ``out``, each checked against
    torch; returns their file names."""
    rng = np.random.default_rng(seed)
    info, spec = card.window, card.extractors["audio"].step
    graph = window_graph(model, info.window)

    def windows() -> Inputs:  # a full window and padded ones, different in every row
        rows = window_inputs(
            info.model, info.window, count=CHECK_BATCH, seed=int(rng.integers(1e9))
        )
        return _stack(rows)

    def waveforms() -> Inputs:
        size = (CHECK_BATCH, spec.samples_per_window)
        return {"waveform": (0.3 * rng.standard_normal(size)).astype(np.float32)}

    def frames() -> Inputs:
        size = (CHECK_BATCH, spec.frames_per_step, spec.frame_size, spec.frame_size, 3)
        return {"frames": rng.integers(0, 256, size, dtype=np.uint8)}

    jobs = (
        ("window", graph, windows, OUTPUT_NAMES, info),
        ("audio", encoders["audio"], waveforms, ("features",), card.extractors["audio"]),
        ("visual", encoders["visual"], frames, ("features",), card.extractors["visual"]),
    )
    written = []
    for role, module, make_inputs, outputs, graph_info in jobs:
        path = out / BATCH_GRAPHS[role]
        metadata = embedded_metadata(graph_info, card.version)
        export_batched_graph(module, make_inputs(), outputs, path, metadata)
        say(f"      {path} ({path.stat().st_size / 2**20:.1f} MiB, batch axis free)")
        _check(module, path, [make_inputs() for _ in range(2)], say)
        written.append(path.name)
    return written
