"""Export a trained LoCo checkpoint's window graph to ONNX and prove that it matches torch.

    python export/to_onnx.py [--checkpoint CKPT] --out DIR [--window T] [--hop STEPS] [--fp16]
                             [--config CFG]

Writes ``DIR/loco.onnx``: ``WindowGraph``, (visual (1,T,Dv), audio (1,T,Da), mask (1,T)) ->
(scores (1,N,C), segments (1,N,2) or (1,N,C,2)), with static shapes, at opset 18, by the dynamo
exporter (``torch.onnx.export(..., dynamo=True)``: it exports nn.LayerNorm as single
LayerNormalization nodes and keeps every shape static; no fallback exporter is needed), with the
``loco_stream`` metadata (classes, step timing, window, hop, decode and model configs) in its
metadata_props. The exporter's optimiser folds constants and merges common subexpressions; the
constants it folded once per attention block (the same (T, T) relative positions) are then
stored once (``export/initializers.py``). onnxsim is not a dependency. Then, a line per stage:

1. the graph: ``onnx.checker``, the TensorRT readiness check of ``export/trt_readiness.py``
   (supported ops; no If, Loop, Scan or NonZero; static shapes; no decomposed LayerNorm), and
   LayerNormalization nodes for the torch module's nn.LayerNorm calls (one each, or fewer where
   the exporter merged norms with equal weights applied to one tensor);
2. ONNX Runtime (CPU) against torch on fresh random windows, full and padded (a mask with trailing
   zeros): the maximum absolute error of each output must stay within 1e-4, scaled by the
   output's magnitude where that exceeds 1 (segments are in steps: at 256 steps fp32 itself
   resolves only 3e-5);
3. with ``--fp16``, ``DIR/loco_fp16.onnx`` (fp16 weights and arithmetic, fp32 inputs and outputs
   behind Cast nodes) and its error against torch, reported without a threshold.

T defaults to the checkpoint's ``model.window``; any multiple of the top level's stride works (the
network is length-agnostic). ``--hop`` is the number of steps between two runs of the graph in the
stream (recorded in the metadata). Without ``--checkpoint`` the package's default model is
exported. ``--config CFG`` replaces the checkpoint's ``data`` (step timing) and ``decode`` settings
recorded in the metadata; its ``model`` section, if any, must match the checkpoint's.

Exit status: 0 exported and verified; 1 the export failed, the graph breaks a constraint, or ONNX
Runtime disagrees with torch; 2 bad arguments, checkpoint or config.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
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

import loco_stream  # noqa: E402
from export.common import write_metadata  # noqa: E402
from export.initializers import share_identical_initializers  # noqa: E402
from export.trt_readiness import check_trt_readiness  # noqa: E402
from loco_stream.config import Config, ConfigError, ModelConfig, config_from_dict  # noqa: E402
from loco_stream.model import LoCo  # noqa: E402
from loco_stream.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from loco_stream.runtime.torch_backend import (  # noqa: E402
    DEFAULT_HOP_STEPS,
    OUTPUT_NAMES,
    check_window,
    window_graph,
    window_metadata,
)
from train.checkpoint import CheckpointError, load_model  # noqa: E402

OPSET = 18
WINDOW_FILE = "loco.onnx"
FP16_FILE = "loco_fp16.onnx"
DEFAULT_CHECKPOINT = Path(loco_stream.__file__).parent / "assets" / "default_model" / "loco.pt"
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
    ``inputs``), ``metadata`` as the graph's ``loco_stream`` JSON. Works for any torch module."""
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
    write_metadata(model, metadata)
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
    """What in the graph at ``path`` breaks DESIGN.md's export constraints ([] when nothing):
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
    onnx.save(model, str(target))
    return target


def export_window_graph(
    model: LoCo,
    config: Config,
    class_names: list[str],
    out_dir: Path,
    window: int,
    hop: int = DEFAULT_HOP_STEPS,
) -> Path:
    """Export the LoCo window graph for windows of ``window`` steps to ``out_dir/loco.onnx``."""
    check_window(config.model, window, hop)
    inputs = window_inputs(config.model, window, count=1)[0]
    metadata = window_metadata(config, class_names, window, hop)
    return export_graph(
        window_graph(model, window), inputs, OUTPUT_NAMES, out_dir / WINDOW_FILE, metadata
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


def resolve_checkpoint(path: Path | None) -> Path:
    """``path``, or the package's default model when it is None."""
    if path is not None:
        return path
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(
            f"no default model is shipped yet ({DEFAULT_CHECKPOINT} does not exist): pass "
            "--checkpoint CKPT, a checkpoint written by `python -m train` (e.g. runs/NAME/best.pt)"
        )
    return DEFAULT_CHECKPOINT


def report_errors(errors: dict[str, OutputError], tolerance: float | None) -> list[str]:
    """Print one line per output; the outputs over ``tolerance`` (None: no threshold)."""
    failed = []
    for name, error in errors.items():
        line = f"      {name:<9} max abs error {error.max_abs:.3g} (max |torch| {error.scale:.3g})"
        if tolerance is not None:
            bound = tolerance * max(1.0, error.scale)
            ok = error.within(tolerance)
            line += f"  {'OK' if ok else 'FAILED'}, tolerance {bound:.3g}"
            if not ok:
                failed.append(name)
        print(line, flush=True)
    return failed


def export_and_verify(
    model: LoCo,
    config: Config,
    class_names: list[str],
    out_dir: Path,
    window: int,
    hop: int,
    fp16: bool,
) -> Path:
    """Stages 2 to 4 (or 5) of the CLI, a line each; raises ExportError on the first failure."""
    total = 5 if fp16 else 4
    print(f"[2/{total}] exporting the window graph (dynamo, opset {OPSET}, T={window})", flush=True)
    start = time.perf_counter()
    path = export_window_graph(model, config, class_names, out_dir, window, hop)
    size = path.stat().st_size / 2**20
    print(f"      {path} ({size:.1f} MiB, {time.perf_counter() - start:.1f} s)", flush=True)

    graph = window_graph(model, window)
    windows = window_inputs(config.model, window)
    layer_norms = count_layer_norms(graph, windows[0])
    print(
        f"[3/{total}] checking the graph: onnx.checker, TensorRT readiness, "
        f"LayerNormalization nodes ({layer_norms} calls), no If/Loop/NonZero, static shapes",
        flush=True,
    )
    problems = check_graph(path, layer_norms)
    if problems:
        raise ExportError(f"{path} breaks the export constraints:\n  - " + "\n  - ".join(problems))
    print("      OK", flush=True)

    print(
        f"[4/{total}] ONNX Runtime vs torch on {len(windows)} random windows "
        f"({len(windows) - 1} padded)",
        flush=True,
    )
    failed = report_errors(verify_against_torch(graph, path, windows), TOLERANCE)
    if failed:
        raise ExportError(
            f"ONNX Runtime disagrees with torch on {', '.join(failed)} beyond {TOLERANCE:g}: "
            f"{path} does not compute what the checkpoint does"
        )

    if fp16:
        print(f"[5/{total}] fp16 copy (fp32 inputs and outputs) vs torch", flush=True)
        half = convert_to_fp16(path, out_dir / FP16_FILE)
        print(f"      {half} ({half.stat().st_size / 2**20:.1f} MiB)", flush=True)
        # ONNX Runtime's CPU provider lacks fp16 kernels for a few ops (Abs, Greater): it runs
        # them in fp32 behind Casts and logs a note per node, which is no concern of a GPU build
        runtime_log = logging.getLogger(OnnxRuntimeBackend.__module__)
        level = runtime_log.level
        runtime_log.setLevel(logging.ERROR)
        try:
            report_errors(verify_against_torch(graph, half, windows), None)
        finally:
            runtime_log.setLevel(level)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, help=f"checkpoint from train/ (default: {DEFAULT_CHECKPOINT})"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--window", type=int, help="T, steps per window (default: the model's)")
    parser.add_argument(
        "--hop", type=int, default=DEFAULT_HOP_STEPS, help="steps between two windows (default 4)"
    )
    parser.add_argument("--fp16", action="store_true", help="also write loco_fp16.onnx")
    parser.add_argument(
        "--config", type=Path, help="YAML whose data and decode sections replace the checkpoint's"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")  # torch.export
    total = 5 if args.fp16 else 4
    try:
        if args.out.exists() and not args.out.is_dir():
            raise ConfigError(f"--out {args.out} exists and is not a directory")
        checkpoint = resolve_checkpoint(args.checkpoint)
        print(f"[1/{total}] loading {checkpoint}", flush=True)
        model, config, class_names = load_model(checkpoint)
        if args.config is not None:
            config = apply_config_file(config, args.config)
        window = config.model.window if args.window is None else args.window
        check_window(config.model, window, args.hop)
    except (CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"      {config.model.variant}, {len(class_names)} classes, window {window} steps, "
        f"hop {args.hop} steps of {config.data.step_seconds:g} s",
        flush=True,
    )
    try:
        export_and_verify(model, config, class_names, args.out, window, args.hop, args.fp16)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: {args.out / WINDOW_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
