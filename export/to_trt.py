"""Build one TensorRT engine per ONNX graph of a model directory.

    python export/to_trt.py --onnx DIR [--fp16] [--int8 --calib FEATDIR] [--workspace MB]
                            [--out DIR]

For every ``model/X.onnx`` (the LoCo window graph and the two feature extractors): the readiness
check of ``export/trt_readiness.py`` first, for all graphs, then an engine per graph with every
input's shape fixed by its optimization profile (min = opt = max = the graph's static shape).
Written to ``--out`` (default: the model directory): ``X.engine``, its sidecar ``X.engine.json``
(TensorRT version, GPU name and compute capability, precision, the ONNX file's sha256 and its
``loco_stream`` metadata; the tensorrt backend refuses an engine whose sidecar does not match the
machine), and ``timing.cache``, TensorRT's timing cache, reused by every later build.

INT8 (``--int8 --calib FEATDIR``, TensorRT 10) calibrates with entropy calibration on real
feature windows. FEATDIR holds, per video, one ``<video>_<input>.npy`` file per (1, T, C) input of
the graph, a float array shaped (T_total, C) at the graph's step rate: for the LoCo graph
``<video>_visual.npy`` (T_total, Dv) and ``<video>_audio.npy`` (T_total, Da), as written by the
project's feature extractors. Consecutive windows of the graph's T steps are cut from each video
(the last one zero-padded); a (1, T) input (the mask) is 1 on real steps and 0 on padding. Graphs
whose inputs are not feature windows (the extractors take frames and waveforms) are built in FP16.
The calibration result is cached in ``X.calib.cache``: delete it to calibrate again.

Exit status: 0 built; 1 a graph is not ready or did not build, or bad arguments; 2 TensorRT or an
NVIDIA GPU is missing on this machine (the message says which, and what to install).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

if __package__ in (None, ""):  # run as `python export/to_trt.py`: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.common import read_metadata  # noqa: E402
from export.trt_readiness import check_trt_readiness  # noqa: E402
from loco_stream.runtime.base import BackendUnavailable  # noqa: E402
from loco_stream.runtime.cuda_device import GpuInfo, current_gpu, open_cuda_buffers  # noqa: E402
from loco_stream.runtime.engine_info import EngineInfo, sha256_file, write_engine_info  # noqa: E402
from loco_stream.runtime.tensorrt_backend import import_tensorrt  # noqa: E402

GPU_MISSING = (
    "No NVIDIA GPU found (cuda-python, torch.cuda and nvidia-smi report none): TensorRT builds an "
    "engine on, and for, the GPU that will run it; run to_trt.py on that machine, with the NVIDIA "
    "driver installed"
)
WEAK_TYPING_REMOVED = (
    "TensorRT {version} has no {flag} builder flag (TensorRT 11 removed FP16/INT8 builder flags "
    "in favour of strongly typed networks): build FP32 without --fp16/--int8 here, or install "
    "TensorRT 10 (pip install 'tensorrt-cu12>=10,<11')"
)


class BuildError(RuntimeError):
    """A graph that TensorRT could not parse or build, or unusable calibration data."""


Window = dict[str, np.ndarray]


def graph_inputs(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """Static shapes of a graph's inputs (initializers excluded)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return {
        i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        for i in graph.input
        if i.name not in initializers
    }


def calibration_windows(
    feat_dir: Path, inputs: dict[str, tuple[int, ...]], limit: int
) -> list[Window] | None:
    """Up to ``limit`` input windows cut from FEATDIR's features; None if the graph's inputs are
    not feature windows ((1, T, C) features and at most one (1, T) mask)."""
    features = {name: shape for name, shape in inputs.items() if len(shape) == 3}
    masks = [name for name, shape in inputs.items() if len(shape) == 2]
    steps = {shape[1] for shape in inputs.values()}
    if not features or len(masks) > 1 or len(features) + len(masks) != len(inputs):
        return None
    if len(steps) != 1 or any(shape[0] != 1 for shape in inputs.values()):
        return None
    (window,) = steps
    first = next(iter(features))
    videos = sorted(p.name[: -len(f"_{first}.npy")] for p in feat_dir.glob(f"*_{first}.npy"))
    videos = [v for v in videos if all((feat_dir / f"{v}_{n}.npy").is_file() for n in features)]
    if not videos:
        wanted = ", ".join(f"<video>_{n}.npy (T, {shape[2]})" for n, shape in features.items())
        raise BuildError(f"{feat_dir} holds no calibration features: it needs {wanted}")
    windows: list[Window] = []
    for video in videos:
        arrays = {n: np.load(feat_dir / f"{video}_{n}.npy", mmap_mode="r") for n in features}
        for name, array in arrays.items():
            if array.ndim != 2 or array.shape[1] != features[name][2]:
                raise BuildError(
                    f"{feat_dir / f'{video}_{name}.npy'} has shape {array.shape}; input '{name}' "
                    f"takes (T, {features[name][2]}) features"
                )
        length = min(len(a) for a in arrays.values())  # streams may differ by a step: truncate
        for start in range(0, length, window):
            stop = min(start + window, length)
            cut = {n: np.zeros(features[n], np.float32) for n in features}
            for name, array in arrays.items():
                cut[name][0, : stop - start] = array[start:stop]
            if masks:
                cut[masks[0]] = np.zeros((1, window), np.float32)
                cut[masks[0]][0, : stop - start] = 1.0
            windows.append(cut)
            if len(windows) == limit:
                return windows
    return windows


def _entropy_calibrator(trt: ModuleType, windows: list[Window], cache_path: Path) -> object:
    """An ``IInt8EntropyCalibrator2`` feeding ``windows`` one at a time (batch size 1)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._windows = iter(windows)
            specs = {name: (array.shape, array.dtype) for name, array in windows[0].items()}
            self._buffers = open_cuda_buffers(specs)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            window = next(self._windows, None)
            if window is None:
                self._buffers.close()
                return None
            for name in names:
                self._buffers.upload(name, window[name])
            self._buffers.synchronize()  # TensorRT reads the buffers on its own stream
            return [self._buffers.address(name) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: object) -> None:
            cache_path.write_bytes(memoryview(cache))

    return EntropyCalibrator()


def _network_flags(trt: ModuleType) -> int:
    """Explicit batch: a creation flag before TensorRT 10, the only mode since."""
    if int(trt.__version__.split(".")[0]) < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _attach_timing_cache(config: object, cache_path: Path) -> None:
    """Start from the saved timing cache, or an empty one if it is missing or from elsewhere."""
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
        print(f"  {cache_path.name} is from another TensorRT or GPU: starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_engine(
    trt: ModuleType,
    onnx_path: Path,
    out_dir: Path,
    precision: str,
    gpu: GpuInfo,
    workspace_mb: int | None = None,
    windows: list[Window] | None = None,
) -> Path:
    """Parse, build and write ``out_dir/X.engine`` and its sidecar; returns the engine's path."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n    ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{onnx_path.name}: TensorRT's ONNX parser failed:\n    {errors}")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = tuple(tensor.shape)
        profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    cache_path = out_dir / "timing.cache"
    _attach_timing_cache(config, cache_path)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers TensorRT cannot quantize run in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calib_cache = out_dir / f"{onnx_path.stem}.calib.cache"
        if calib_cache.is_file():
            print(f"  reusing {calib_cache.name} (delete it to calibrate again)")
        calibrator = _entropy_calibrator(trt, windows, calib_cache)  # alive until the build ends
        config.int8_calibrator = calibrator

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx_path.name}: TensorRT could not build an engine (see its log)")
    engine_path = out_dir / f"{onnx_path.stem}.engine"
    engine_path.write_bytes(memoryview(serialized))
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    info = EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        metadata=read_metadata(onnx_path),
    )
    write_engine_info(engine_path, info)
    return engine_path


def missing_requirements() -> list[str]:
    """What this machine lacks to build engines: TensorRT, an NVIDIA GPU, or both."""
    missing = []
    try:
        import_tensorrt()
    except BackendUnavailable as err:
        missing.append(str(err))
    if current_gpu() is None:
        missing.append(GPU_MISSING)
    return missing


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, metavar="DIR", help="model directory")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    parser.add_argument("--int8", action="store_true", help="INT8 (with FP16) after calibration")
    parser.add_argument("--calib", type=Path, metavar="FEATDIR", help="features for --int8")
    parser.add_argument("--calib-windows", type=int, default=256, help="at most this many windows")
    parser.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit")
    parser.add_argument("--out", type=Path, metavar="DIR", help="default: the --onnx directory")
    args = parser.parse_args(argv)
    if args.int8 and args.calib is None:
        parser.error("--int8 needs --calib FEATDIR (feature files to calibrate with)")
    if args.calib is not None and not args.calib.is_dir():
        parser.error(f"--calib {args.calib} is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # loco_fp16.onnx is ONNX Runtime's fp16 copy; TensorRT builds fp16 from the fp32 graph itself
    graphs = sorted(g for g in args.onnx.glob("*.onnx") if not g.stem.endswith("_fp16"))
    if not graphs:
        print(f"error: no *.onnx graph in {args.onnx}", file=sys.stderr)
        return 1
    precisions = {g: "int8" if args.int8 else "fp16" if args.fp16 else "fp32" for g in graphs}
    windows: dict[Path, list[Window]] = {}
    try:
        for graph in graphs if args.int8 else []:
            found = calibration_windows(args.calib, graph_inputs(graph), args.calib_windows)
            if found is None:
                print(f"{graph.name}: inputs are not feature windows: FP16 instead of INT8")
                precisions[graph] = "fp16"
            else:
                windows[graph] = found
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    not_ready = 0
    for graph in graphs:
        problems = check_trt_readiness(graph)
        print(f"{graph.name}: {'ready for TensorRT' if not problems else 'NOT ready:'}")
        for problem in problems:
            print(f"  - {problem}")
        not_ready += bool(problems)
    if not_ready:
        print(f"error: {not_ready} graph(s) not ready for TensorRT", file=sys.stderr)
        return 1

    missing = missing_requirements()
    if missing:
        for line in missing:
            print(f"error: {line}", file=sys.stderr)
        return 2
    trt = import_tensorrt()
    flags = {"int8": ["FP16", "INT8"], "fp16": ["FP16"], "fp32": []}
    for flag in sorted({flag for p in precisions.values() for flag in flags[p]}):
        if not hasattr(trt.BuilderFlag, flag):
            message = WEAK_TYPING_REMOVED.format(version=trt.__version__, flag=flag)
            print(f"error: {message}", file=sys.stderr)
            return 2
    gpu = current_gpu()
    out_dir = args.out or args.onnx
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"TensorRT {trt.__version__} on {gpu.name} (compute capability {gpu.compute_capability})")
    for number, graph in enumerate(graphs, 1):
        precision = precisions[graph]
        print(f"[{number}/{len(graphs)}] {graph.name}: building a {precision} engine...")
        started = time.perf_counter()
        try:
            engine = build_engine(
                trt, graph, out_dir, precision, gpu, args.workspace, windows.get(graph)
            )
        except BuildError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        size_mb = engine.stat().st_size / 1e6
        elapsed = time.perf_counter() - started
        print(f"  wrote {engine} ({size_mb:.1f} MB) in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
