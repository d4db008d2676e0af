"""A serialized TensorRT engine (built by ``export/to_trt.py``) run with TensorRT's runtime API.

Before TensorRT sees the engine, its sidecar (``X.engine.json``) is checked against this machine:
another TensorRT version, another GPU model or a changed source graph is refused with a message
that says to rebuild. Device buffers come from cuda-python or torch (``cuda_device``); every
tensor has a static shape, so buffers are allocated once and bound once.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from .base import Backend, BackendUnavailable, TensorSpec
from .cuda_device import current_gpu, open_cuda_buffers
from .engine_info import check_engine_runs_here, read_engine_info

TENSORRT_MISSING = (
    "TensorRT Python package not found: install NVIDIA TensorRT 10 on a machine with an NVIDIA "
    "GPU (pip install 'tensorrt-cu12>=10,<11', or tensorrt-cu13 for CUDA 13, where NVIDIA's "
    "package index is reachable; or the Python wheel of the TensorRT tarball)"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; ``BackendUnavailable`` with what to install when it is missing."""
    try:
        import tensorrt
    except ImportError as err:
        raise BackendUnavailable(f"{TENSORRT_MISSING} [{err}]") from err
    return tensorrt


def tensorrt_version() -> str:
    """Version of the installed TensorRT, e.g. ``"10.8.0.43"``."""
    return import_tensorrt().__version__


class TensorRTBackend(Backend):
    """One engine, one execution context, one CUDA stream."""

    def __init__(self, engine_path: Path):
        if not engine_path.is_file():
            raise BackendUnavailable(
                f"no engine at {engine_path}: build it with "
                f"`python export/to_trt.py --model {engine_path.parent}`"
            )
        info = read_engine_info(engine_path)
        gpu = current_gpu()
        check_engine_runs_here(engine_path, info, tensorrt_version(), gpu)
        trt = import_tensorrt()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendUnavailable(f"TensorRT could not deserialize {engine_path} (see its log)")
        self._context = self._engine.create_execution_context()

        tensors: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.input_specs = {}
        self.output_names = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            if any(d < 0 for d in shape):
                raise BackendUnavailable(
                    f"{engine_path.name}: tensor '{name}' has a dynamic shape {shape}; build "
                    "engines with export/to_trt.py, which fixes every input's shape"
                )
            tensors[name] = (shape, dtype)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_specs[name] = TensorSpec(shape, dtype)
            else:
                self.output_names.append(name)
        self._buffers = open_cuda_buffers(tensors)
        for name in tensors:
            self._context.set_tensor_address(name, self._buffers.address(name))

        self.name = "tensorrt"
        self.device = f"CUDA: {gpu.name} (TensorRT {info.tensorrt_version}, {info.precision})"
        self.metadata = info.metadata

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, array in inputs.items():
            self._buffers.upload(name, array)
        if not self._context.execute_async_v3(self._buffers.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see its log)")
        return {name: self._buffers.download(name) for name in self.output_names}

    def close(self) -> None:
        self._context = None  # the context before the engine, the engine before its runtime
        self._engine = None
        self._runtime = None
        self._buffers.close()
