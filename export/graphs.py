"""What every exported graph goes through: the exporter, the checks, the comparison with torch.

Shared by the window graph (`export.window_graph`), the step graphs (`export.step_graph`), the
extractors and the batched graphs; it imports none of the command lines (``python -m export``,
``export/to_onnx.py``, ``export/to_trt.py``).

- ``export_graph``: any torch module to ONNX by the dynamo exporter (``torch.onnx.export(...,
  dynamo=True)``, opset 18: nn.LayerNorm exports as single LayerNormalization nodes and every
  shape stays static), with the graph's metadata (see ``loco_stream.bundle``) in its
  metadata_props; constants folded once per use are stored once (``export/initializers.py``);
- ``check_graph``: ``onnx.checker``, the TensorRT readiness check of ``export/trt_readiness.py``
  (supported ops; no If, Loop, Scan or NonZero; static shapes; no decomposed LayerNorm), and
  LayerNormalization nodes for the torch module's nn.LayerNorm calls (one each, or fewer where
  the exporter merged norms with equal weights applied to one tensor);
- ``verify_against_torch``: ONNX Runtime (CPU) against torch on the given inputs: the maximum
  absolute error of each output must stay within 1e-4, scaled by the output's magnitude where
  that exceeds 1 (segments are in steps: at 256 steps fp32 itself resolves only 3e-5);
- ``convert_to_fp16``: the graph with fp16 weights and arithmetic, fp32 inputs and outputs behind
  Cast nodes (what a strongly typed TensorRT FP16 build takes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import torch
from torch import nn

from export.initializers import share_identical_initializers, store_exact_halves
from export.trt_readiness import check_trt_readiness
from loco_stream.bundle import set_graph_metadata
from loco_stream.runtime.onnxruntime_backend import OnnxRuntimeBackend

OPSET = 18
TOLERANCE = 1e-4  # fp32 ONNX Runtime vs torch, max abs error (x max(1, output magnitude))

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


def as_tensors(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(array) for array in inputs.values())


def export_graph(
    module: nn.Module,
    inputs: Inputs,
    output_names: Sequence[str],
    path: Path,
    metadata: dict,
    exact_halves: bool = False,
) -> Path:
    """Export ``module(*inputs.values())`` to ``path``: dynamo, opset 18, static shapes (those of
    ``inputs``), ``metadata`` embedded as the graph's metadata. Works for any torch module.
    ``exact_halves``: weights fp16 holds exactly are stored as fp16 (`store_exact_halves`)."""
    try:
        program = torch.onnx.export(
            module.eval(),
            as_tensors(inputs),
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
    if exact_halves:
        store_exact_halves(model)
    set_graph_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def require_constraints(path: Path, layer_norms: int) -> None:
    """Raise ExportError listing what in the graph at ``path`` breaks the export constraints."""
    problems = check_graph(path, layer_norms)
    if problems:
        raise ExportError(f"{path} breaks the export constraints:\n  - " + "\n  - ".join(problems))


def require_agreement(path: Path, failed: list[str]) -> None:
    """Raise ExportError when outputs ``failed`` (of the graph at ``path``) disagree with torch."""
    if failed:
        raise ExportError(
            f"ONNX Runtime disagrees with torch on {', '.join(failed)} beyond {TOLERANCE:g}: "
            f"{path} does not compute what the checkpoint does"
        )


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
            module(*as_tensors(inputs))
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
                expected = module.eval()(*as_tensors(feed))
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
