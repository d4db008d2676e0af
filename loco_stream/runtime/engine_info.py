"""The JSON sidecar of a TensorRT engine: what built it, from what, and whether it can run here.

A serialized engine runs only on the TensorRT version that built it and on the GPU model it was
built for, and it says nothing about the ONNX file it came from. ``X.engine.json`` records all
three (with the graph's ``loco_stream`` metadata), so a mismatch is refused with a message
instead of failing inside TensorRT, and a stale engine is not run in place of a newer graph.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle import sha256_file
from .base import BackendUnavailable
from .cuda_device import GpuInfo


@dataclass(frozen=True)
class EngineInfo:
    """Contents of ``X.engine.json``."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # "fp32", "fp16" or "int8"
    onnx_file: str  # name of the source graph, a sibling of the engine when built in place
    onnx_sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)  # the graph's loco_stream metadata


def sidecar_path(engine_path: Path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    return engine_path.with_name(engine_path.name + ".json")


def write_engine_info(engine_path: Path, info: EngineInfo) -> Path:
    """Write the sidecar next to ``engine_path``; returns its path."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(dataclasses.asdict(info), indent=2) + "\n")
    return path


def read_engine_info(engine_path: Path) -> EngineInfo:
    """Read the sidecar of ``engine_path``; an engine without a readable one is refused."""
    path = sidecar_path(engine_path)
    rebuild = "rebuild the engine with `python export/to_trt.py`"
    if not path.is_file():
        raise BackendUnavailable(f"{engine_path.name} has no sidecar {path.name}: {rebuild}")
    try:
        return EngineInfo(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise BackendUnavailable(
            f"{path} is not a valid engine sidecar ({err}): {rebuild}"
        ) from err


def check_engine_runs_here(
    engine_path: Path, info: EngineInfo, tensorrt_version: str, gpu: GpuInfo | None
) -> None:
    """Refuse an engine built by another TensorRT, for another GPU, or from another ONNX file."""
    rebuild = "rebuild it on this machine with `python export/to_trt.py --model MODEL_DIR`"
    if info.tensorrt_version != tensorrt_version:
        raise BackendUnavailable(
            f"{engine_path.name} was built with TensorRT {info.tensorrt_version} but this machine "
            f"has TensorRT {tensorrt_version}; an engine runs only on the TensorRT version that "
            f"built it: {rebuild}"
        )
    if gpu is None:
        raise BackendUnavailable(
            "no CUDA GPU is visible (cuda-python, torch and nvidia-smi found none): the tensorrt "
            "backend needs an NVIDIA GPU with its driver"
        )
    if (info.gpu_name, info.compute_capability) != (gpu.name, gpu.compute_capability):
        raise BackendUnavailable(
            f"{engine_path.name} was built for {info.gpu_name} (compute capability "
            f"{info.compute_capability}) but this machine has {gpu.name} (compute capability "
            f"{gpu.compute_capability}); an engine is specific to the GPU model: {rebuild}"
        )
    onnx_path = engine_path.with_name(info.onnx_file)
    if onnx_path.is_file() and sha256_file(onnx_path) != info.onnx_sha256:
        raise BackendUnavailable(
            f"{engine_path.name} was built from an older {info.onnx_file} (its sha256 differs "
            f"from the sidecar's): {rebuild}"
        )
