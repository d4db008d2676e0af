"""Inference backends for exported graphs: ONNX Runtime (CPU, CUDA, TensorRT EP), native TensorRT.

    with open_backend("onnxruntime", Path("model/loco.onnx")) as backend:
        outputs = backend.run({"visual": v, "audio": a, "mask": m})  # "scores", "segments"

No torch here: torch is imported only by the native TensorRT backend, and only when cuda-python is
missing and its CUDA tensors are the device memory left to use, and by the ``torch`` development
backend (a checkpoint's torch window graph), only when it is asked for.
"""

from __future__ import annotations

from pathlib import Path

from ..defaults import BACKENDS
from .base import (
    Backend,
    BackendUnavailable,
    GraphLoadError,
    InputError,
    TensorSpec,
    UnknownBackendError,
)
from .onnxruntime_backend import OnnxRuntimeBackend
from .tensorrt_backend import TensorRTBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "GraphLoadError",
    "InputError",
    "TensorSpec",
    "UnknownBackendError",
    "open_backend",
]


def open_backend(kind: str, graph_path: Path, threads: int = 2) -> Backend:
    """Load ``graph_path`` on the backend ``kind`` (one of ``BACKENDS``).

    ``threads`` is the CPU backend's intra-op thread count. For ``tensorrt`` the path may name the
    ``.onnx`` graph (its sibling ``.engine`` is run) or the ``.engine`` itself; for ``torch`` it
    names a checkpoint (the window graph runs in torch on the CPU). Raises ``BackendUnavailable``
    saying what to install when this machine cannot run ``kind``, ``UnknownBackendError`` for a
    name not in ``BACKENDS``, and ``GraphLoadError`` for a file the backend cannot load.
    """
    graph_path = Path(graph_path)
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(graph_path, "cpu", threads)
    if kind == "onnxruntime-cuda":
        return OnnxRuntimeBackend(graph_path, "cuda")
    if kind == "onnxruntime-tensorrt":
        return OnnxRuntimeBackend(graph_path, "tensorrt")
    if kind == "tensorrt":
        return TensorRTBackend(graph_path.with_suffix(".engine"))
    if kind == "torch":
        try:
            from .torch_backend import TorchBackend
        except ImportError as err:
            raise BackendUnavailable(
                f"the torch backend needs torch: pip install -e '.[train]' [{err}]"
            ) from err
        return TorchBackend.from_checkpoint(graph_path, threads=threads)
    raise UnknownBackendError(f"unknown backend {kind!r}; valid backends: {', '.join(BACKENDS)}")
