"""export/to_trt.py against TensorRT's Python API as each version has it, with a stand-in module
that records what the builder is asked (TensorRT itself needs an NVIDIA GPU; the real build is in
test_runtime.py and runs where one exists).

What TensorRT offers per version, from its API references: 10.x has the STRONGLY_TYPED network
creation flag besides the (deprecated) weak-typing builder flags FP16/INT8 and implicit INT8
calibration; 11.x removed the weak-typing flags and the calibrators, and every network is strongly
typed (STRONGLY_TYPED is kept, deprecated and ignored).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import onnx
import pytest

from loco_stream.bundle import (
    WINDOW_FP16_GRAPH,
    WINDOW_GRAPH,
    WINDOW_INT8_GRAPH,
    embedded_metadata,
    file_entry,
    read_card,
    write_card,
)
from loco_stream.runtime.cuda_device import GpuInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
to_trt = importlib.import_module("export.to_trt")
engines = importlib.import_module("export.engines")
graphs = importlib.import_module("export.graphs")
quantize = importlib.import_module("export.quantize")

H200 = GpuInfo("NVIDIA H200", "9.0")
WEAK_TYPING = ("FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS")


def fake_tensorrt(version: str, calls: list[tuple]) -> ModuleType:
    """A ``tensorrt`` module with the builder API of ``version``, recording every call that
    decides an engine's types into ``calls``."""
    major = int(version.split(".")[0])
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    creation = {"STRONGLY_TYPED": 1}
    if major < 10:
        creation = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(**creation)
    builder_flags = ["REFIT", "DEBUG", "STRIP_PLAN"] + (list(WEAK_TYPING) if major < 11 else [])
    trt.BuilderFlag = SimpleNamespace(**{name: name for name in builder_flags})
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    if major < 11:
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})

    class Network:
        def __init__(self) -> None:
            self.inputs: list[SimpleNamespace] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> SimpleNamespace:
            return self.inputs[index]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: object) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse", Path(path).name))
            graph = onnx.load(path).graph
            for value in graph.input:
                dims = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
                self.network.inputs.append(SimpleNamespace(name=value.name, shape=dims))
            return True

    class Cache:
        def serialize(self) -> bytes:
            return b"timing cache"

    class Config:
        def __setattr__(self, name: str, value: object) -> None:
            calls.append(("config." + name, value))  # int8_calibrator and the like

        def set_flag(self, flag: str) -> None:
            calls.append(("set_flag", flag))

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("workspace", size))

        def add_optimization_profile(self, profile: object) -> None:
            pass

        def create_timing_cache(self, blob: bytes) -> Cache:
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Profile:
        def set_shape(self, name: str, low: tuple, best: tuple, high: tuple) -> None:
            assert low == best == high, "every input's shape is static"

    class Builder:
        def __init__(self, logger: object) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calls.append(("build", [i.name for i in network.inputs]))
            return b"serialized engine"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.fixture(scope="module")
def every_precision(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """The tiny model directory with its fp16 graph and a Q/DQ graph (calibrated on random
    windows: what TensorRT is asked does not depend on the scales), all in its card."""
    import shutil

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("trt") / "model"))
    card = read_card(folder)
    metadata = embedded_metadata(card.window, card.version)
    graphs.convert_to_fp16(folder / WINDOW_GRAPH, folder / WINDOW_FP16_GRAPH)
    rng = np.random.default_rng(0)
    windows = [
        {
            "visual": rng.standard_normal((1, 32, 8), dtype=np.float32),
            "audio": rng.standard_normal((1, 32, 8), dtype=np.float32),
            "mask": np.ones((1, 32), np.float32),
        }
        for _ in range(4)
    ]
    quantize.quantize_window_graph(
        folder / WINDOW_GRAPH, folder / WINDOW_INT8_GRAPH, windows, metadata, lambda line: None
    )
    files = dict(card.files)
    for name in (WINDOW_FP16_GRAPH, WINDOW_INT8_GRAPH):
        files[name] = file_entry(folder / name)
    write_card(folder, dataclasses.replace(card, files=files))
    return folder


@pytest.fixture
def build(every_precision: Path, tmp_path: Path, monkeypatch):
    """``build(version, *args)``: run to_trt.main with TensorRT ``version`` on an H200; returns
    (exit status, the recorded calls, the output directory)."""

    def run(version: str, *args: str) -> tuple[int, list[tuple], Path]:
        calls: list[tuple] = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, calls))
        monkeypatch.setattr(engines, "current_gpu", lambda: H200)
        out = tmp_path / f"engines-{version}-{'-'.join(args) or 'fp32'}"
        status = to_trt.main(["--model", str(every_precision), "--out", str(out), *args])
        return status, calls, out

    return run


@pytest.mark.parametrize("version", ["10.0.1.6", "10.13.3.9", "11.0.0.114", "11.4.1.7"])
@pytest.mark.parametrize(
    ("flag", "window_graph"),
    [((), WINDOW_GRAPH), (("--fp16",), WINDOW_FP16_GRAPH), (("--int8",), WINDOW_INT8_GRAPH)],
)
def test_every_network_is_strongly_typed_and_typed_by_its_graph(build, version, flag, window_graph):
    status, calls, out = build(version, *flag)
    assert status == 0, calls
    strongly_typed = 1 << 1 if version.startswith("10.") else 0  # 11: always strongly typed
    assert [c for c in calls if c[0] == "create_network"] == [
        ("create_network", strongly_typed)
    ] * 5
    assert [c[1] for c in calls if c[0] == "parse"] == [
        window_graph,
        "audio_extractor.onnx",
        "visual_extractor.onnx",
        "loco_step.onnx",  # fp32 at every precision: its state goes from call to call
        "loco_step_offline.onnx",
    ]
    assert not [c for c in calls if c[0] in ("set_flag", "config.int8_calibrator")]
    assert not [c for c in calls if c[0].startswith("config.")]
    precision = {"--fp16": "fp16", "--int8": "int8"}.get(flag[0] if flag else "", "fp32")
    sidecar = json.loads((out / "loco.engine.json").read_text())
    assert sidecar["precision"] == precision and sidecar["onnx_file"] == window_graph
    assert sidecar["tensorrt_version"] == version and sidecar["gpu_name"] == H200.name
    assert sidecar["metadata"]["kind"] == "window"
    assert (out / "loco.engine").read_bytes() == b"serialized engine"
    for name in ("audio_extractor", "visual_extractor", "loco_step", "loco_step_offline"):
        assert json.loads((out / f"{name}.engine.json").read_text())["precision"] == "fp32"
    assert json.loads((out / "loco_step.engine.json").read_text())["metadata"]["kind"] == "step"


def test_tensorrt_older_than_10_is_refused_before_any_build(build, capsys):
    status, calls, out = build("9.3.0.1")
    assert status == 2 and calls == [] and not out.exists()
    assert "TensorRT 9.3.0.1 is older than 10" in capsys.readouterr().err


def test_workspace_limit_is_passed_in_bytes(build):
    status, calls, _ = build("11.4.1.7", "--workspace", "512")
    assert status == 0 and calls.count(("workspace", 512 << 20)) == 5  # window, extractors, steps
