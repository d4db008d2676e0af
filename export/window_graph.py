"""The window graph's export: ``loco.onnx`` and its fp16 twin, proven to compute what torch does.

- ``export_window_graph``: ``WindowGraph``, (visual (1,T,Dv), audio (1,T,Da), mask (1,T)) ->
  (scores (1,N,C), segments (1,N,2) or (1,N,C,2)), static shapes, by `export.graphs.export_graph`;
- ``export_and_verify``: that, its checks (`export.graphs.check_graph`) and ONNX Runtime against
  torch on fresh random windows, full and padded (a mask with trailing zeros);
- ``apply_config_file``: a YAML file's ``data`` and ``decode`` settings over a checkpoint's config.

T defaults to the checkpoint's ``model.window``; any multiple of the top level's stride works (the
network is length-agnostic).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from export.graphs import (
    OPSET,
    TOLERANCE,
    Inputs,
    OutputError,
    count_layer_norms,
    export_graph,
    report_errors,
    require_agreement,
    require_constraints,
    verify_against_torch,
)
from loco_stream.bundle import (
    DEFAULT_HOP_STEPS,
    WINDOW_GRAPH,
    embedded_metadata,
    package_version,
)
from loco_stream.config import Config, ConfigError, ModelConfig, config_from_dict
from loco_stream.model import LoCo
from loco_stream.runtime.onnxruntime_backend import OnnxRuntimeBackend
from loco_stream.runtime.torch_backend import (
    OUTPUT_NAMES,
    check_window,
    window_graph,
    window_info,
)

NUM_WINDOWS = 4  # random windows compared: one full, the others padded


def window_inputs(
    config: ModelConfig, window: int, count: int = NUM_WINDOWS, seed: int = 0
) -> list[Inputs]:
    """``count`` random windows: the first fully valid, the others padded with trailing zeros in
    the mask (valid lengths T, ~3T/4, ~T/2, ..., off the strides' grid); features are random
    everywhere, padding included, since padding must not change any valid output."""
    rng = np.random.default_rng(seed)
    windows = []
    for k in range(count):
        valid = max(1, window * (count - k) // count - k)
        mask = np.zeros((1, window), np.float32)
        mask[:, :valid] = 1.0
        visual = rng.standard_normal((1, window, config.visual_dim), dtype=np.float32)
        audio = rng.standard_normal((1, window, config.audio_dim), dtype=np.float32)
        windows.append({"visual": visual, "audio": audio, "mask": mask})
    return windows


def export_window_graph(
    model: LoCo,
    config: Config,
    class_names: list[str],
    out_dir: Path,
    window: int,
    hop: int = DEFAULT_HOP_STEPS,
    step_hop: int = 0,
) -> Path:
    """Export the LoCo window graph for windows of ``window`` steps to ``out_dir/loco.onnx``
    (``step_hop``: the step graph's steps a call, recorded in the metadata; 0 for none)."""
    check_window(config.model, window, hop)
    inputs = window_inputs(config.model, window, count=1)[0]
    info = window_info(config, class_names, window, hop, step_hop)
    metadata = embedded_metadata(info, package_version())
    return export_graph(
        window_graph(model, window), inputs, OUTPUT_NAMES, out_dir / WINDOW_GRAPH, metadata
    )


def apply_config_file(config: Config, path: Path) -> Config:
    """``config`` with the ``data`` and ``decode`` settings of the YAML file at ``path``; a
    ``model`` section there must describe the checkpoint's own network."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    merged = config.to_dict()
    for section, values in raw.items():
        if section in merged and isinstance(values, dict):
            merged[section].update(values)
        elif section in merged and values is not None:
            raise ConfigError(f"config {path}: section {section!r} must be a mapping")
        else:
            merged[section] = values  # an unknown section: config_from_dict names the valid ones
    updated = config_from_dict(merged)
    if updated.model != config.model:
        differ = [
            field.name
            for field in dataclasses.fields(ModelConfig)
            if getattr(updated.model, field.name) != getattr(config.model, field.name)
        ]
        raise ConfigError(
            f"config {path}: model.{', model.'.join(differ)} differ from the checkpoint's; the "
            "weights fit only the checkpoint's own network (use --window for another T)"
        )
    return updated


def export_and_verify(
    model: LoCo,
    config: Config,
    class_names: list[str],
    out_dir: Path,
    window: int,
    hop: int,
    say: Callable[[str], None] = print,
    step_hop: int = 0,
) -> dict[str, OutputError]:
    """Export ``out_dir/loco.onnx``, check it, and compare it with torch, ``say``-ing a line per
    step; the error of each output. Raises ExportError on the first failure."""
    path = export_window_graph(model, config, class_names, out_dir, window, hop, step_hop)
    say(f"      {path} ({path.stat().st_size / 2**20:.1f} MiB, opset {OPSET}, T={window})")
    graph = window_graph(model, window)
    windows = window_inputs(config.model, window)
    layer_norms = count_layer_norms(graph, windows[0])
    require_constraints(path, layer_norms)
    say(
        f"      onnx.checker, TensorRT readiness, {layer_norms} LayerNorm calls as "
        "LayerNormalization nodes, no If/Loop/NonZero, static shapes: OK"
    )
    say(f"      ONNX Runtime vs torch on {len(windows)} random windows ({len(windows) - 1} padded)")
    errors = verify_against_torch(graph, path, windows)
    require_agreement(path, report_errors(errors, TOLERANCE, say))
    return errors


def verify_fp16(
    model: LoCo, config: Config, path: Path, window: int, say: Callable[[str], None] = print
) -> None:
    """``say`` how far the fp16 graph at ``path`` is from torch (reported, no threshold)."""
    # ONNX Runtime's CPU provider lacks fp16 kernels for a few ops (Abs, Greater): it runs them in
    # fp32 behind Casts and logs a note per node, which is no concern of a GPU build
    runtime_log = logging.getLogger(OnnxRuntimeBackend.__module__)
    level = runtime_log.level
    runtime_log.setLevel(logging.ERROR)
    try:
        errors = verify_against_torch(
            window_graph(model, window), path, window_inputs(config.model, window)
        )
    finally:
        runtime_log.setLevel(level)
    report_errors(errors, None, say)
