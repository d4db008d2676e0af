"""Export a LoCo window graph to ONNX and prove that it computes what torch does.

    python export/to_onnx.py [--checkpoint CKPT] --out DIR [...]   # the same as python -m export

The command line is ``python -m export``'s (``export/__main__.py``): it writes the whole model
directory. This module holds the graph-level steps that command runs for the window graph:

- ``export_window_graph``: ``WindowGraph``, (visual (1,T,Dv), audio (1,T,Da), mask (1,T)) ->
  (scores (1,N,C), segments (1,N,2) or (1,N,C,2)), static shapes, opset 18, by the dynamo
  exporter (``torch.onnx.export(..., dynamo=True)``: nn.LayerNorm exports as single
  LayerNormalization nodes and every shape stays static), with the graph's metadata (see
  ``loco_stream.bundle``) in its metadata_props. Constants the exporter folded once per attention
  block (the same (T, T) relative positions) are stored once (``export/initializers.py``);
- ``check_graph``: ``onnx.checker``, the TensorRT readiness check of ``export/trt_readiness.py``
  (supported ops; no If, Loop, Scan or NonZero; static shapes; no decomposed LayerNorm), and
  LayerNormalization nodes for the torch module's nn.LayerNorm calls (one each, or fewer where
  the exporter merged norms with equal weights applied to one tensor);
- ``verify_against_torch``: ONNX Runtime (CPU) against torch on fresh random windows, full and
  padded (a mask with trailing zeros): the maximum absolute error of each output must stay within
  1e-4, scaled by the output's magnitude where that exceeds 1 (segments are in steps: at 256
  steps fp32 itself resolves only 3e-5);
- ``convert_to_fp16``: the graph with fp16 weights and arithmetic, fp32 inputs and outputs behind
  Cast nodes (what a strongly typed TensorRT FP16 build takes).

T defaults to the checkpoint's ``model.window``; any multiple of the top level's stride works (the
network is length-agnostic).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import torch
import yaml
from torch import nn

if __package__ in (None, ""):  # run as `python export/to_onnx.py`: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.initializers import share_identical_initializers  # noqa: E402
from export.trt_readiness import check_trt_readiness  # noqa: E402
from loco_stream.bundle import (  # noqa: E402
    DEFAULT_HOP_STEPS,
    WINDOW_GRAPH,
    embedded_metadata,
    package_version,
    set_graph_metadata,
)
from loco_stream.config import Config, ConfigError, ModelConfig, config_from_dict  # noqa: E402
from loco_stream.model import LoCo  # noqa: E402
from loco_stream.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from loco_stream.runtime.torch_backend import (  # noqa: E402
    OUTPUT_NAMES,
    check_window,
    window_graph,
    window_info,
)

OPSET = 18
TOLERANCE = 1e-4  # fp32 ONNX Runtime vs torch, max abs error (x max(1, output magnitude))
NUM_WINDOWS = 4  # random windows compared: one full, the others padded

Inputs = dict[str, np.ndarray]  # input name -> array, in the module's argument order


class ExportError(RuntimeError):
    """A graph that did not export, breaks the export constraints, or disagrees with torch."""


@dataclass(frozen=True)
class OutputError:
    """How far ONNX Runtime is from torch on one output, over all compared inputs."""

    max_abs: float  # max |onnx - torch| (inf if either is NaN)
    scale: float  # max |torch|

    def within(self, tolerance: float) -> bool:
        return self.max_abs <= tolerance * max(1.0, self.scale)


def _tensors(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(array) for array in inputs.values())


def export_graph(
    module: nn.Module, inputs: Inputs, output_names: Sequence[str], path: Path, metadata: dict
) -> Path:
    """Export ``module(*inputs.values())`` to ``path``: dynamo, opset 18, static shapes (those of
    ``inputs``), ``metadata`` embedded as the graph's metadata. Works for any torch module."""
    try:
        program = torch.onnx.export(
            module.eval(),
            _tensors(inputs),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(output_names),
            verbose=False,
        )
    except Exception as err:  # the exporter raises many types; its message says what failed
        raise ExportError(f"the dynamo exporter failed on {type(module).__name__}: {err}") from err
    model = program.model_proto
    share_identical_initializers(model)
    set_graph_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def count_layer_norms(module: nn.Module, inputs: Inputs) -> int:
    """How many times ``module`` calls an nn.LayerNorm on ``inputs`` (a norm shared across
    pyramid levels counts once per call): one LayerNormalization node each in the graph."""
    calls = 0

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1

    norms = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    handles = [norm.register_forward_hook(count) for norm in norms]
    try:
        with torch.inference_mode():
            module(*_tensors(inputs))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def check_graph(path: Path, layer_norms: int) -> list[str]:
    """What in the graph at ``path`` breaks the export constraints ([] when nothing):
    onnx.checker, TensorRT readiness (which finds decomposed LayerNorms), and LayerNormalization
    nodes for the module's ``layer_norms`` nn.LayerNorm calls.

    The exporter's optimiser merges norms with equal weights applied to the same tensor (an
    untrained model's norms are all ones and zeros), so fewer nodes than calls is no error."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        return [f"onnx.checker: {err}"]
    problems = [str(problem) for problem in check_trt_readiness(model)]
    nodes = onnx.inliner.inline_local_functions(model).graph.node
    found = sum(node.op_type == "LayerNormalization" for node in nodes)
    if layer_norms and not 0 < found <= layer_norms:
        problems.append(
            f"{found} LayerNormalization nodes for {layer_norms} nn.LayerNorm calls: each "
            "LayerNorm must export as one LayerNormalization node (fp16 overflows otherwise)"
        )
    return problems


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


def verify_against_torch(
    module: nn.Module, onnx_path: Path, inputs: list[Inputs], threads: int = 2
) -> dict[str, OutputError]:
    """Run each input dict through ``module`` in torch and ``onnx_path`` in ONNX Runtime (CPU,
    ``threads``); the error of each output (torch's outputs pair with the graph's by position)."""
    backend = OnnxRuntimeBackend(onnx_path, "cpu", threads)
    errors = {name: OutputError(0.0, 0.0) for name in backend.output_names}
    try:
        for feed in inputs:
            with torch.inference_mode():
                expected = module.eval()(*_tensors(feed))
            expected = expected if isinstance(expected, tuple | list) else (expected,)
            got = backend.run(feed)
            for name, reference in zip(backend.output_names, expected, strict=True):
                reference = reference.numpy()
                diff = float(np.max(np.abs(got[name].astype(np.float32) - reference)))
                previous = errors[name]
                errors[name] = OutputError(
                    max(previous.max_abs, diff if math.isfinite(diff) else math.inf),
                    max(previous.scale, float(np.max(np.abs(reference)))),
                )
    finally:
        backend.close()
    return errors


def convert_to_fp16(source: Path, target: Path) -> Path:
    """``source`` with fp16 weights and arithmetic, its inputs and outputs kept fp32 (Cast nodes),
    converted by ONNX Runtime's own converter (onnxconverter-common is not needed)."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as err:
        raise ExportError(
            f"--fp16 needs onnxruntime.transformers.float16, part of the onnxruntime wheel: {err}"
        ) from err
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    sort_nodes(model.graph)  # the converter appends its input Casts after their consumers
    onnx.save(model, str(target))
    return target


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Put ``graph``'s nodes in topological order (onnx.checker and TensorRT's parser need it),
    keeping the given order among nodes that are ready together."""
    available = {value.name for value in (*graph.input, *graph.initializer)} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            names = sorted({n for node in pending for n in node.input} - available)[:3]
            raise ExportError(f"the graph has a cycle or undefined inputs: {names}")
        for node in ready:
            available.update(node.output)
        ordered += ready
        taken = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)


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


def report_errors(
    errors: dict[str, OutputError], tolerance: float | None, say: Callable[[str], None] = print
) -> list[str]:
    """``say`` one line per output; the outputs over ``tolerance`` (None: no threshold)."""
    failed = []
    for name, error in errors.items():
        line = f"      {name:<9} max abs error {error.max_abs:.3g} (max |torch| {error.scale:.3g})"
        if tolerance is not None:
            bound = tolerance * max(1.0, error.scale)
            ok = error.within(tolerance)
            line += f"  {'OK' if ok else 'FAILED'}, tolerance {bound:.3g}"
            if not ok:
                failed.append(name)
        say(line)
    return failed


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
    problems = check_graph(path, layer_norms)
    if problems:
        raise ExportError(f"{path} breaks the export constraints:\n  - " + "\n  - ".join(problems))
    say(
        f"      onnx.checker, TensorRT readiness, {layer_norms} LayerNorm calls as "
        "LayerNormalization nodes, no If/Loop/NonZero, static shapes: OK"
    )
    say(f"      ONNX Runtime vs torch on {len(windows)} random windows ({len(windows) - 1} padded)")
    errors = verify_against_torch(graph, path, windows)
    failed = report_errors(errors, TOLERANCE, say)
    if failed:
        raise ExportError(
            f"ONNX Runtime disagrees with torch on {', '.join(failed)} beyond {TOLERANCE:g}: "
            f"{path} does not compute what the checkpoint does"
        )
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


def main(argv: list[str] | None = None) -> int:
    """``python -m export``'s command line (this script is its historical name)."""
    from export.__main__ import main as export_main

    return export_main(argv)


if __name__ == "__main__":
    sys.exit(main())
