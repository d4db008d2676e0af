"""The TensorRT engines of a model directory: strongly typed networks, TensorRT 10 and 11
(the command is ``python export/to_trt.py``; ``python -m export --trt`` runs it after an export).

The directory is verified first (its card, the
SHA-256 of every graph), then every graph that is built must pass the readiness check of
``export/trt_readiness.py``. One engine per graph, every input's shape fixed by its optimization
profile (min = opt = max = the graph's static shape):

    loco.engine               from loco.onnx (fp32), loco_fp16.onnx (--fp16) or loco_int8.onnx
                              (--int8: Q/DQ nodes, explicit quantization)
    audio_extractor.engine    from audio_extractor.onnx (fp32)
    visual_extractor.engine   from visual_extractor.onnx (fp32)

Every network is created strongly typed: each tensor has the type the ONNX graph gives it, so the
precision is chosen when the graph is exported (``python -m export --fp16`` writes the fp16 graph,
``--int8 --calib VIDEOS`` the calibrated Q/DQ graph), never by builder flags. That is the only way
TensorRT 11 builds (it removed the FP16/INT8 builder flags and implicit INT8 calibration), and
TensorRT 10 builds the same networks with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``. Each
engine gets a sidecar ``X.engine.json`` (TensorRT version, GPU name and compute capability,
precision, the source graph's name and SHA-256, its metadata; the tensorrt backend refuses an
engine whose sidecar does not match the machine), and ``timing.cache`` is reused by later builds.

Exit status: 0 built; 1 a bad model directory, a graph that is not ready or did not build; 2
TensorRT (10 or later) or an NVIDIA GPU is missing on this machine (the message says which).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from export.trt_readiness import check_trt_readiness
from loco_stream.bundle import (
    AUDIO_GRAPH,
    OFFLINE_STEP_GRAPH,
    STEP_GRAPH,
    VISUAL_GRAPH,
    WINDOW_GRAPHS,
    ModelDirError,
    graph_metadata,
    load_graph,
    read_bundle,
    sha256_file,
)
from loco_stream.runtime.base import BackendUnavailable
from loco_stream.runtime.cuda_device import GpuInfo, current_gpu
from loco_stream.runtime.engine_info import EngineInfo, write_engine_info
from loco_stream.runtime.tensorrt_backend import import_tensorrt

GPU_MISSING = (
    "No NVIDIA GPU found (cuda-python, torch.cuda and nvidia-smi report none): TensorRT builds an "
    "engine on, and for, the GPU that will run it; run to_trt.py on that machine, with the NVIDIA "
    "driver installed"
)
TENSORRT_TOO_OLD = (
    "TensorRT {version} is older than 10: install TensorRT 10 or 11 (pip install tensorrt-cu12, "
    "or tensorrt-cu13 for CUDA 13)"
)
PRECISION_GRAPH_MISSING = (
    "not part of this model directory: write it with `python -m export --checkpoint LOCO.pt "
    "--out {folder} {flag}` first"
)


class BuildError(RuntimeError):
    """A graph that TensorRT could not parse or build."""


@dataclass(frozen=True)
class Build:
    """One engine to build: from which graph, at which precision."""

    source: Path  # the ONNX graph
    engine_name: str  # X.engine
    precision: str  # "fp32", "fp16" or "int8": the graph's own types


def plan_builds(folder: Path, precision: str) -> list[Build]:
    """The engines of a verified model directory; ``ModelDirError`` when the graph that
    ``precision`` needs was not exported or any listed file is damaged."""
    card = read_bundle(folder)
    window_source = WINDOW_GRAPHS[precision]
    if window_source not in card.files:
        flag = "--fp16" if precision == "fp16" else "--int8 --calib VIDEOS_DIR"
        message = PRECISION_GRAPH_MISSING.format(folder=folder, flag=flag)
        raise ModelDirError(folder / window_source, message)
    builds = [
        Build(folder / window_source, "loco.engine", precision),
        Build(folder / AUDIO_GRAPH, "audio_extractor.engine", "fp32"),
        Build(folder / VISUAL_GRAPH, "visual_extractor.engine", "fp32"),
    ]
    for name in (STEP_GRAPH, OFFLINE_STEP_GRAPH):  # fp32: their state goes from call to call
        if name in card.files:
            builds.append(Build(folder / name, name.replace(".onnx", ".engine"), "fp32"))
    return builds


def tensorrt_major(trt: ModuleType) -> int:
    return int(trt.__version__.split(".")[0])


def network_flags(trt: ModuleType) -> int:
    """Creation flags of a strongly typed network: the STRONGLY_TYPED flag in TensorRT 10; none in
    11 and later, where every network is strongly typed (the flag is deprecated and ignored)."""
    if tensorrt_major(trt) == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _attach_timing_cache(config: object, cache_path: Path, say: Callable[[str], None]) -> None:
    """Start from the saved timing cache, or an empty one if it is missing or from elsewhere."""
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
        say(f"  {cache_path.name} is from another TensorRT or GPU: starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_engine(
    trt: ModuleType,
    build: Build,
    out_dir: Path,
    gpu: GpuInfo,
    workspace_mb: int | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Parse ``build.source`` into a strongly typed network, build it, write the engine and its
    sidecar into ``out_dir``; returns the engine's path."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(build.source)):
        errors = "\n    ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{build.source.name}: TensorRT's ONNX parser failed:\n    {errors}")

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
    _attach_timing_cache(config, cache_path, say)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{build.source.name}: TensorRT could not build an engine (see its log)")
    engine_path = out_dir / build.engine_name
    engine_path.write_bytes(memoryview(serialized))
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    info = EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=build.precision,
        onnx_file=build.source.name,
        onnx_sha256=sha256_file(build.source),
        metadata=graph_metadata(load_graph(build.source)),
    )
    write_engine_info(engine_path, info)
    return engine_path


def missing_requirements() -> list[str]:
    """What this machine lacks to build engines: TensorRT 10 or later, an NVIDIA GPU."""
    missing = []
    try:
        trt = import_tensorrt()
        if tensorrt_major(trt) < 10:
            missing.append(TENSORRT_TOO_OLD.format(version=trt.__version__))
    except BackendUnavailable as err:
        missing.append(str(err))
    if current_gpu() is None:
        missing.append(GPU_MISSING)
    return missing


def build_model_dir(
    folder: Path,
    precision: str = "fp32",
    out_dir: Path | None = None,
    workspace_mb: int | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Build every engine of the model directory ``folder``; the exit status (see above)."""
    try:
        builds = plan_builds(folder, precision)
    except ModelDirError as err:
        say(f"error: {err}")
        return 1
    not_ready = 0
    for build in builds:
        problems = check_trt_readiness(build.source)
        say(f"{build.source.name}: {'ready for TensorRT' if not problems else 'NOT ready:'}")
        for problem in problems:
            say(f"  - {problem}")
        not_ready += bool(problems)
    if not_ready:
        say(f"error: {not_ready} graph(s) not ready for TensorRT")
        return 1

    missing = missing_requirements()
    if missing:
        for line in missing:
            say(f"error: {line}")
        return 2
    trt, gpu = import_tensorrt(), current_gpu()
    out_dir = out_dir or folder
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"TensorRT {trt.__version__} on {gpu.name} (compute capability {gpu.compute_capability})")
    for number, build in enumerate(builds, 1):
        name, precision = build.source.name, build.precision
        say(f"[{number}/{len(builds)}] {name}: a strongly typed {precision} engine")
        started = time.perf_counter()
        try:
            engine = build_engine(trt, build, out_dir, gpu, workspace_mb, say)
        except BuildError as err:
            say(f"error: {err}")
            return 1
        size_mb = engine.stat().st_size / 1e6
        say(f"  wrote {engine} ({size_mb:.1f} MB) in {time.perf_counter() - started:.0f} s")
    return 0


def report(line: str) -> None:
    """Print a line of the build: errors to stderr, the rest to stdout."""
    print(line, file=sys.stderr if line.startswith("error: ") else sys.stdout, flush=True)
