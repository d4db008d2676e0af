"""ONNX Runtime on the CPU, or on an NVIDIA GPU through its CUDA or TensorRT execution provider.

ONNX Runtime falls back to the CPU *silently* when the GPU build is missing or its CUDA, cuDNN or
TensorRT libraries cannot be loaded. This backend checks the providers the session actually got
and raises ``BackendUnavailable`` naming what is missing, so the device it reports is the device
that runs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle import METADATA_KEY
from .base import (
    Backend,
    BackendUnavailable,
    GraphLoadError,
    TensorSpec,
    parse_metadata,
)
from .cuda_device import current_gpu

log = logging.getLogger(__name__)

PROVIDERS = {  # accelerator -> the execution provider that must be active
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

_GPU_LIBRARIES = {
    "CUDAExecutionProvider": "the CUDA and cuDNN 9 libraries of the CUDA major version the "
    "installed onnxruntime-gpu was built for (12 or 13)",
    "TensorrtExecutionProvider": "the TensorRT 10 libraries (libnvinfer) as well as the CUDA and "
    "cuDNN 9 libraries of the CUDA major version the installed onnxruntime-gpu was built for",
}


@contextmanager
def _onnxruntime_messages() -> Iterator[list[str]]:
    """Collect what ONNX Runtime says while a session is created (why a provider did not load)."""
    messages: list[str] = []
    set_callback = getattr(ort, "set_default_logger_callback", None)  # onnxruntime >= 1.23
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if set_callback is not None:
            set_callback(lambda severity, category, logid, location, text: messages.append(text), 2)
        try:
            yield messages
        finally:
            if set_callback is not None:
                set_callback(None)
    messages.extend(str(warning.message) for warning in caught)


def _provider_list(accelerator: str, cache_dir: Path) -> list:
    if accelerator == "cpu":
        return ["CPUExecutionProvider"]
    if accelerator == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    return [
        ("TensorrtExecutionProvider", trt_options),
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def _spec(node_arg: ort.NodeArg, graph_path: Path) -> TensorSpec:
    if node_arg.type not in _DTYPES:
        raise GraphLoadError(
            f"{graph_path}: input '{node_arg.name}' has unsupported type {node_arg.type}"
        )
    shape = tuple(d if isinstance(d, int) else None for d in node_arg.shape)
    return TensorSpec(shape, np.dtype(_DTYPES[node_arg.type]))


class OnnxRuntimeBackend(Backend):
    """An ONNX Runtime session over one graph.

    ``accelerator`` is ``"cpu"`` (``threads`` intra-op threads, sequential execution, all graph
    optimisations), ``"cuda"`` or ``"tensorrt"`` (engines cached in ``<graph dir>/ort_trt_cache``).
    """

    def __init__(self, graph_path: Path, accelerator: str = "cpu", threads: int = 2):
        if accelerator not in PROVIDERS:
            raise ValueError(f"accelerator must be one of {sorted(PROVIDERS)}, not {accelerator!r}")
        wanted = PROVIDERS[accelerator]
        installed = ort.get_available_providers()
        if wanted not in installed:
            raise BackendUnavailable(
                f"{wanted} is not available: onnxruntime-gpu is not installed (the installed "
                f"onnxruntime {ort.__version__} has providers {installed}); pip uninstall "
                f"onnxruntime && pip install onnxruntime-gpu, with "
                f"{_GPU_LIBRARIES.get(wanted, 'its libraries')}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # idle threads must not spin: the stream's three sessions take turns on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = _provider_list(accelerator, graph_path.parent / "ort_trt_cache")
        with _onnxruntime_messages() as messages:
            try:
                self.session = ort.InferenceSession(str(graph_path), options, providers=providers)
            except Exception as err:  # ORT's own types (InvalidProtobuf, Fail, ...) per cause
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise GraphLoadError(f"{graph_path}: ONNX Runtime cannot load it: {first}") from err
        active = self.session.get_providers()
        if wanted not in active:
            reason = " | ".join(messages) or "onnxruntime gave no reason"
            raise BackendUnavailable(
                f"{wanted} could not be loaded: {reason} (the session got {active}); it needs "
                f"{_GPU_LIBRARIES[wanted]}. If those libraries come from pip packages (torch's "
                f"nvidia-* wheels), call onnxruntime.preload_dlls() first"
            )
        for text in messages:  # what ONNX Runtime said about a session that did come up
            log.warning("onnxruntime: %s", text)

        self.name = "onnxruntime" if accelerator == "cpu" else f"onnxruntime-{accelerator}"
        version = f"onnxruntime {ort.__version__}"
        if accelerator == "cpu":
            self.device = f"CPU ({version}, {threads} thread{'s' if threads != 1 else ''})"
        else:
            gpu = current_gpu()
            label = "CUDA" if accelerator == "cuda" else "TensorRT"
            self.device = f"{label}: {gpu.name if gpu else 'NVIDIA GPU'} ({version})"
        self.input_specs = {i.name: _spec(i, graph_path) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata = parse_metadata(custom.get(METADATA_KEY), str(graph_path))

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self.session = None
