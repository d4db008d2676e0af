"""loco_stream.runtime backends and export/to_trt.py, with what runs here and what must refuse.

TensorRT and a GPU are absent on CI: there, the native path is tested up to the point where it
must refuse (sidecar checks with a fake engine, missing TensorRT, missing GPU). The tests that
need a GPU, or TensorRT and a GPU, skip with the reason elsewhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from loco_stream.bundle import (
    WINDOW_GRAPH,
    file_entry,
    graph_metadata,
    load_graph,
    read_card,
    set_graph_metadata,
    write_card,
)
from loco_stream.runtime import (
    BACKENDS,
    BackendUnavailable,
    InputError,
    cuda_device,
    open_backend,
    tensorrt_backend,
)
from loco_stream.runtime.cuda_device import GpuInfo
from loco_stream.runtime.engine_info import EngineInfo, sha256_file, write_engine_info

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `export` is a folder of scripts at the repository root
    sys.path.insert(0, str(ROOT))
to_trt = importlib.import_module("export.to_trt")

T, DV, DA, C = 8, 6, 4, 3
METADATA = {"classes": ["dog", "guitar", "car"], "step_seconds": 0.25, "window": T, "hop": 4}
HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
GPU = cuda_device.current_gpu()


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "wv": rng.normal(size=(DV, C)).astype(np.float32),
        "wa": rng.normal(size=(DA, C)).astype(np.float32),
        "ws": rng.normal(size=(DV, 2)).astype(np.float32),
    }


def window_graph() -> onnx.ModelProto:
    """A stand-in for loco.onnx with its contract: visual, audio, mask in; scores, segments out."""
    w = weights()
    nodes = [
        helper.make_node("MatMul", ["visual", "wv"], ["v"]),
        helper.make_node("MatMul", ["audio", "wa"], ["a"]),
        helper.make_node("Add", ["v", "a"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["p"]),
        helper.make_node("Unsqueeze", ["mask", "last"], ["m"]),
        helper.make_node("Mul", ["p", "m"], ["scores"], name="mask_scores"),
        helper.make_node("MatMul", ["visual", "ws"], ["seg"]),
        helper.make_node("Relu", ["seg"], ["segments"]),
    ]
    inputs = [
        helper.make_tensor_value_info("visual", TensorProto.FLOAT, [1, T, DV]),
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, T, DA]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, T]),
    ]
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, T, C]),
        helper.make_tensor_value_info("segments", TensorProto.FLOAT, [1, T, 2]),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in w.items()]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "last"))
    graph = helper.make_graph(nodes, "window", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    set_graph_metadata(model, METADATA)
    return model


def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    w = weights()
    logits = inputs["visual"] @ w["wv"] + inputs["audio"] @ w["wa"]
    scores = 1 / (1 + np.exp(-logits)) * inputs["mask"][..., None]
    return {"scores": scores, "segments": np.maximum(inputs["visual"] @ w["ws"], 0)}


def window_inputs(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((1, T), np.float32)
    mask[0, -2:] = 0
    return {
        "visual": rng.normal(size=(1, T, DV)).astype(np.float32),
        "audio": rng.normal(size=(1, T, DA)).astype(np.float32),
        "mask": mask,
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    onnx.save(window_graph(), directory / "loco.onnx")
    return directory


# --- ONNX Runtime ---------------------------------------------------------------------------


def test_onnxruntime_cpu_matches_numpy_and_reads_metadata(model_dir):
    with open_backend("onnxruntime", model_dir / "loco.onnx", threads=2) as backend:
        assert backend.name == "onnxruntime"
        assert backend.device == f"CPU (onnxruntime {ort.__version__}, 2 threads)"
        assert backend.metadata == METADATA
        assert backend.input_specs["visual"] == ((1, T, DV), np.float32)
        assert backend.output_names == ["scores", "segments"]
        inputs = window_inputs()
        outputs = backend.run(inputs)
    for name, expected in reference(inputs).items():
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-6)
    assert graph_metadata(load_graph(model_dir / "loco.onnx")) == METADATA


def test_wrong_inputs_are_named_with_the_expected_shape(model_dir):
    backend = open_backend("onnxruntime", model_dir / "loco.onnx")
    inputs = window_inputs()
    with pytest.raises(InputError, match=r"input 'visual' has shape \(1, 5, 6\), expected \(1, 8"):
        backend.run({**inputs, "visual": inputs["visual"][:, :5]})
    with pytest.raises(InputError, match=r"input 'audio' has dtype float64, expected \(1, 8, 4\)"):
        backend.run({**inputs, "audio": inputs["audio"].astype(np.float64)})
    with pytest.raises(InputError, match=r"missing \['mask'\]"):
        backend.run({"visual": inputs["visual"], "audio": inputs["audio"]})


@pytest.mark.skipif(HAS_CUDA_EP, reason="onnxruntime-gpu is installed: the CUDA provider exists")
@pytest.mark.parametrize("kind", ["onnxruntime-cuda", "onnxruntime-tensorrt"])
def test_gpu_providers_without_onnxruntime_gpu_say_what_to_install(model_dir, kind):
    with pytest.raises(BackendUnavailable) as caught:
        open_backend(kind, model_dir / "loco.onnx")
    message = str(caught.value)
    provider = "CUDA" if kind == "onnxruntime-cuda" else "Tensorrt"
    assert message.startswith(f"{provider}ExecutionProvider is not available")
    assert "onnxruntime-gpu is not installed" in message
    assert "pip install onnxruntime-gpu" in message


@pytest.mark.skipif(HAS_CUDA_EP, reason="onnxruntime-gpu is installed: the fallback may not occur")
def test_silent_fallback_to_the_cpu_is_refused(model_dir, monkeypatch):
    # As with onnxruntime-gpu whose CUDA libraries are missing: the provider is listed, but the
    # session comes up on the CPU without an error.
    listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    with pytest.raises(BackendUnavailable) as caught:
        open_backend("onnxruntime-cuda", model_dir / "loco.onnx")
    message = str(caught.value)
    assert message.startswith("CUDAExecutionProvider could not be loaded: ")
    assert "the session got ['CPUExecutionProvider']" in message


def test_unknown_backend_lists_the_valid_ones(model_dir):
    with pytest.raises(ValueError, match="valid backends: " + ", ".join(BACKENDS)):
        open_backend("openvino", model_dir / "loco.onnx")


# --- native TensorRT: the refusals ------------------------------------------------------------

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


def fake_engine(model_dir: Path, **changes: str) -> Path:
    engine = model_dir / "loco.engine"
    engine.write_bytes(b"not a real engine")
    fields = {
        "tensorrt_version": "10.8.0.43",
        "gpu_name": H100.name,
        "compute_capability": H100.compute_capability,
        "precision": "fp16",
        "onnx_file": "loco.onnx",
        "onnx_sha256": sha256_file(model_dir / "loco.onnx"),
        "metadata": METADATA,
    }
    write_engine_info(engine, EngineInfo(**{**fields, **changes}))
    return engine


@pytest.fixture
def machine(monkeypatch):
    """This machine as the engine checks see it: TensorRT 10.8.0.43 on an H100."""
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: "10.8.0.43")
    monkeypatch.setattr(tensorrt_backend, "current_gpu", lambda: H100)
    return monkeypatch


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tensorrt_version": "10.3.0.26"},
            "built with TensorRT 10.3.0.26 but this machine has TensorRT 10.8.0.43",
        ),
        (
            {"gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"},
            "built for NVIDIA A100-SXM4-40GB (compute capability 8.0) but this machine has "
            "NVIDIA H100 80GB HBM3 (compute capability 9.0)",
        ),
        ({"onnx_sha256": "0" * 64}, "built from an older loco.onnx"),
    ],
)
def test_engine_from_another_tensorrt_gpu_or_graph_is_refused(model_dir, machine, changes, message):
    fake_engine(model_dir, **changes)
    with pytest.raises(BackendUnavailable, match="rebuild it on this machine") as caught:
        open_backend("tensorrt", model_dir / "loco.onnx")  # the .onnx names its sibling .engine
    assert message in str(caught.value)


def test_engine_without_gpu_or_sidecar_is_refused(model_dir, machine):
    engine = fake_engine(model_dir)
    machine.setattr(tensorrt_backend, "current_gpu", lambda: None)
    with pytest.raises(BackendUnavailable, match="no CUDA GPU is visible"):
        open_backend("tensorrt", engine)
    engine.with_name("loco.engine.json").unlink()
    with pytest.raises(BackendUnavailable, match="loco.engine has no sidecar loco.engine.json"):
        open_backend("tensorrt", engine)
    engine.unlink()
    with pytest.raises(BackendUnavailable, match="no engine at .*loco.engine: build it with"):
        open_backend("tensorrt", engine)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_matching_engine_without_tensorrt_says_what_to_install(model_dir, machine):
    machine.undo()  # the real version getter: TensorRT is not importable
    machine.setattr(tensorrt_backend, "current_gpu", lambda: H100)
    with pytest.raises(BackendUnavailable, match="TensorRT Python package not found: install"):
        open_backend("tensorrt", fake_engine(model_dir))


# --- export/to_trt.py ---------------------------------------------------------------------------


def run_to_trt(*args: str) -> subprocess.CompletedProcess:
    script = str(ROOT / "export" / "to_trt.py")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True)


@pytest.fixture
def tiny_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's tiny model directory (python -m export's output)."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny"))


@pytest.mark.skipif(HAS_TENSORRT and GPU is not None, reason="TensorRT and a GPU are both here")
def test_to_trt_without_tensorrt_or_gpu_exits_2_and_writes_no_engine(tiny_copy):
    result = run_to_trt("--model", str(tiny_copy))
    assert result.returncode == 2, result.stdout + result.stderr
    for name in ("loco.onnx", "audio_extractor.onnx", "visual_extractor.onnx"):
        assert f"{name}: ready for TensorRT" in result.stdout
    if not HAS_TENSORRT:
        assert "error: TensorRT Python package not found: install NVIDIA TensorRT" in result.stderr
    if GPU is None:
        assert "error: No NVIDIA GPU found" in result.stderr
    assert list(tiny_copy.glob("*.engine*")) == []


def test_to_trt_names_the_precision_graph_that_was_not_exported(tiny_copy):
    result = run_to_trt("--onnx", str(tiny_copy), "--fp16")  # the design card's spelling
    assert result.returncode == 1
    assert f"{tiny_copy / 'loco_fp16.onnx'}: not part of" in result.stderr
    assert "python -m export" in result.stderr and "--fp16" in result.stderr


def test_to_trt_refuses_a_damaged_model_directory(tiny_copy):
    (tiny_copy / WINDOW_GRAPH).write_bytes(b"garbage")
    result = run_to_trt("--model", str(tiny_copy))
    assert result.returncode == 1 and "loco.onnx: changed since export" in result.stderr


def test_to_trt_refuses_a_graph_that_is_not_ready(tiny_copy):
    path = tiny_copy / WINDOW_GRAPH
    graph = onnx.load(str(path))
    graph.graph.node.append(helper.make_node("NonZero", ["mask"], ["nz"], name="find_events"))
    onnx.save(graph, str(path))
    card = read_card(tiny_copy)  # a card that vouches for the changed graph
    write_card(
        tiny_copy, dataclasses.replace(card, files={**card.files, WINDOW_GRAPH: file_entry(path)})
    )
    result = run_to_trt("--model", str(tiny_copy))
    assert result.returncode == 1
    assert "loco.onnx: NOT ready" in result.stdout
    assert "find_events (NonZero)" in result.stdout


def test_gpu_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 9.0"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_device._gpu_from_nvidia_smi() == H100
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cuda_device._gpu_from_nvidia_smi() is None


@pytest.mark.skipif(GPU is not None, reason="a GPU is visible here")
def test_device_memory_without_gpu_is_refused():
    with pytest.raises(BackendUnavailable, match="cuda-python or torch|no CUDA GPU is visible"):
        cuda_device.open_cuda_buffers({"x": ((2, 3), np.dtype(np.float32))})


@pytest.mark.skipif(GPU is None, reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("provider", ["cuda-python", "torch"])
def test_device_buffers_round_trip(provider):
    assert GPU.name and GPU.compute_capability.replace(".", "").isdigit()
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    m = np.array([[True, False, True]])
    specs = {"x": (x.shape, x.dtype), "m": (m.shape, m.dtype)}
    if provider == "cuda-python":
        cudart = cuda_device._cudart()
        if cudart is None:
            pytest.skip("cuda-python is not installed")
        buffers = cuda_device._CudaPythonBuffers(cudart, specs)
    else:
        buffers = cuda_device._TorchBuffers(
            pytest.importorskip("torch", reason="the torch buffers need the train extra"), specs
        )
    buffers.upload("x", x)
    buffers.upload("m", m)
    assert buffers.address("x") != buffers.address("m") and isinstance(buffers.stream, int)
    np.testing.assert_array_equal(buffers.download("x"), x)
    np.testing.assert_array_equal(buffers.download("m"), m)
    buffers.close()


# --- TensorRT and a GPU: the real build -----------------------------------------------------


@pytest.mark.skipif(GPU is None, reason="needs an NVIDIA GPU to build and run a TensorRT engine")
def test_tensorrt_engines_build_and_match_onnxruntime(tiny_copy):
    pytest.importorskip("tensorrt", reason="needs NVIDIA TensorRT 10 or 11 (Python package)")
    assert to_trt.main(["--model", str(tiny_copy)]) == 0
    info = json.loads((tiny_copy / "loco.engine.json").read_text())
    metadata = graph_metadata(load_graph(tiny_copy / WINDOW_GRAPH))
    assert info["gpu_name"] == GPU.name and info["precision"] == "fp32"
    assert info["metadata"] == metadata and (tiny_copy / "timing.cache").is_file()
    rng = np.random.default_rng(0)
    inputs = {
        "visual": rng.normal(size=(1, 32, 8)).astype(np.float32),
        "audio": rng.normal(size=(1, 32, 8)).astype(np.float32),
        "mask": np.ones((1, 32), np.float32),
    }
    with open_backend("tensorrt", tiny_copy / WINDOW_GRAPH) as backend:
        assert backend.metadata == metadata and backend.device.startswith("CUDA: ")
        outputs = backend.run(inputs)
    expected = open_backend("onnxruntime", tiny_copy / WINDOW_GRAPH).run(inputs)
    for name in expected:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-3, atol=1e-4)
    assert os.path.getsize(tiny_copy / "loco.engine") > 0
