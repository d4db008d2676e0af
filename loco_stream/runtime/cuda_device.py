"""What the native TensorRT path needs from CUDA: which GPU this is, device buffers and a stream.

Two providers, tried in this order, neither imported before it is needed: cuda-python (the
``cuda-python`` / ``cuda-bindings`` package, small) and torch built with CUDA (large, but often
there already). The GPU's name and compute capability also come from ``nvidia-smi`` when neither
Python package is installed, which is enough to describe or refuse an engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .base import BackendUnavailable


@dataclass(frozen=True)
class GpuInfo:
    """A CUDA GPU as engines care about it."""

    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "9.0"


def _cudart() -> ModuleType | None:
    """cuda-python's runtime module (new layout first, then the pre-12.6 one), or None."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        return None


def _check(cudart: ModuleType, result: tuple) -> object:
    """Unwrap a cuda-python ``(error, value...)`` tuple, raising on an error."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        raise RuntimeError(
            f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}"
        )
    return values[0] if len(values) == 1 else values


def _gpu_from_cudart() -> GpuInfo | None:
    cudart = _cudart()
    if cudart is None:
        return None
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return None
    props = _check(cudart, cudart.cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
    return GpuInfo(name.rstrip("\x00"), f"{props.major}.{props.minor}")


def _gpu_from_torch() -> GpuInfo | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return GpuInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")


def _gpu_from_nvidia_smi() -> GpuInfo | None:
    smi = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0].strip() if visible is not None else "0"
    if smi is None or first in ("", "-1"):
        return None
    query = [smi, "-i", first, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    fields = [field.strip() for field in out.splitlines()[0].rsplit(",", 1)] if out.strip() else []
    return GpuInfo(fields[0], fields[1]) if len(fields) == 2 else None


def current_gpu() -> GpuInfo | None:
    """The first visible CUDA GPU, from cuda-python, torch or nvidia-smi; None without one."""
    for probe in (_gpu_from_cudart, _gpu_from_torch, _gpu_from_nvidia_smi):
        gpu = probe()
        if gpu is not None:
            return gpu
    return None


class CudaBuffers(ABC):
    """One device buffer per named tensor, and one CUDA stream that every copy is ordered on."""

    provider: str  # "cuda-python" or "torch"

    @property
    @abstractmethod
    def stream(self) -> int:
        """The stream's handle, as ``execute_async_v3`` takes it."""

    @abstractmethod
    def address(self, name: str) -> int:
        """Device address of the buffer ``name``."""

    @abstractmethod
    def upload(self, name: str, array: np.ndarray) -> None:
        """Copy ``array`` (its buffer's shape and dtype) to the device, ordered on the stream."""

    @abstractmethod
    def download(self, name: str) -> np.ndarray:
        """Wait for the stream, then copy buffer ``name`` back to the host."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until everything ordered on the stream is done."""

    @abstractmethod
    def close(self) -> None:
        """Free the buffers and the stream."""


class _CudaPythonBuffers(CudaBuffers):
    provider = "cuda-python"

    def __init__(self, cudart: ModuleType, specs: dict[str, tuple[tuple[int, ...], np.dtype]]):
        self._cudart = cudart
        self._specs = {
            name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in specs.items()
        }
        self._stream = _check(cudart, cudart.cudaStreamCreate())
        self._pointers: dict[str, int] = {}
        for name, (shape, dtype) in self._specs.items():
            nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
            self._pointers[name] = int(_check(cudart, cudart.cudaMalloc(nbytes)))

    @property
    def stream(self) -> int:
        return int(self._stream)

    def address(self, name: str) -> int:
        return self._pointers[name]

    def upload(self, name: str, array: np.ndarray) -> None:
        host = np.ascontiguousarray(array, dtype=self._specs[name][1])
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        copy = self._cudart.cudaMemcpyAsync(
            self._pointers[name], host.ctypes.data, host.nbytes, kind, self._stream
        )
        _check(self._cudart, copy)
        # A copy from pageable memory returns once the source is staged: ``host`` may go.

    def download(self, name: str) -> np.ndarray:
        shape, dtype = self._specs[name]
        host = np.empty(shape, dtype)
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        copy = self._cudart.cudaMemcpyAsync(
            host.ctypes.data, self._pointers[name], host.nbytes, kind, self._stream
        )
        _check(self._cudart, copy)
        self.synchronize()
        return host

    def synchronize(self) -> None:
        _check(self._cudart, self._cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        for pointer in self._pointers.values():
            self._cudart.cudaFree(pointer)
        self._pointers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None


class _TorchBuffers(CudaBuffers):
    provider = "torch"

    def __init__(self, torch: ModuleType, specs: dict[str, tuple[tuple[int, ...], np.dtype]]):
        self._torch = torch
        self._stream = torch.cuda.Stream()
        self._tensors = {
            name: torch.empty(
                tuple(shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device="cuda"
            )
            for name, (shape, dtype) in specs.items()
        }

    @property
    def stream(self) -> int:
        return self._stream.cuda_stream

    def address(self, name: str) -> int:
        return self._tensors[name].data_ptr()

    def upload(self, name: str, array: np.ndarray) -> None:
        with self._torch.cuda.stream(self._stream):
            self._tensors[name].copy_(self._torch.from_numpy(np.ascontiguousarray(array)))

    def download(self, name: str) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            return self._tensors[name].cpu().numpy()  # a blocking copy, after the stream's work

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        self._tensors.clear()


def open_cuda_buffers(specs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> CudaBuffers:
    """Device buffers for ``specs`` (name -> (shape, dtype)) through cuda-python or torch."""
    cudart = _cudart()
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        if err == cudart.cudaError_t.cudaSuccess and count > 0:
            return _CudaPythonBuffers(cudart, specs)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return _TorchBuffers(torch, specs)
    if cudart is None and torch is None:
        raise BackendUnavailable(
            "device memory for TensorRT needs cuda-python or torch with CUDA, and neither is "
            "importable: pip install cuda-python (or a CUDA build of torch)"
        )
    found = ", ".join(n for n, m in (("cuda-python", cudart), ("torch", torch)) if m is not None)
    raise BackendUnavailable(f"no CUDA GPU is visible ({found} found none): check the driver")
