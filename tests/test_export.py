"""python -m export (and its historical name export/to_onnx.py) and the torch backend: the
exported graphs compute what torch does, in every format.

A tiny LoCo checkpoint (random weights, perturbed so that no two norms are alike, saved with the
state layout of train/loop.py) and tiny extractors go through the CLI once with --fp16; the tests
read what it wrote. INT8 (Q/DQ) is calibrated on generated clips. Every variant and the
paper-size network are exported in the slow tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from media import make_clip

from loco_stream.bundle import (
    WINDOW_FP16_GRAPH,
    WINDOW_GRAPH,
    WINDOW_INT8_GRAPH,
    embedded_metadata,
    graph_metadata,
    load_graph,
    package_version,
    read_bundle,
)
from loco_stream.config import Config, ConfigError, DataConfig, ModelConfig, load_config
from loco_stream.features.networks import AudioEncoder, VisualEncoder
from loco_stream.model import LoCo
from loco_stream.model.checkpoint import save_checkpoint, save_extractors
from loco_stream.model_dir import ModelDir
from loco_stream.runtime import open_backend
from loco_stream.runtime.torch_backend import TorchBackend, window_graph, window_info
from tests.tiny_model import TINY_SPEC, tiny_model_config

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `export` is a folder of scripts at the repository root
    sys.path.insert(0, str(ROOT))
to_onnx = importlib.import_module("export.to_onnx")
graphs = importlib.import_module("export.graphs")
window_export = importlib.import_module("export.window_graph")
readiness = importlib.import_module("export.trt_readiness")

TINY = tiny_model_config(
    visual_dim=24,
    audio_dim=16,
    num_classes=5,
    regression_ranges=[[0, 4], [4, 8], [8, 10000]],
    num_head_layers=2,
    class_aware_regression=True,
)
CLASSES = ["dog", "guitar", "car", "bell", "rain"]
HOP = 2
FORBIDDEN = {"If", "Loop", "Scan", "NonZero"}
# torch.export's own deprecation notice, raised inside torch at every export
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def perturbed(config: ModelConfig, seed: int = 0) -> LoCo:
    """A LoCo whose weights all differ, as after training (the init has equal norms, zero heads)."""
    torch.manual_seed(seed)
    model = LoCo(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def read_metadata(path: Path) -> dict:
    return graph_metadata(load_graph(path))


def write_extractors(path: Path) -> Path:
    """Tiny extractors that give TINY's feature sizes (audio 16, visual 24)."""
    encoders = {
        "audio": AudioEncoder(TINY_SPEC.sample_rate, TINY.audio_dim, width=4),
        "visual": VisualEncoder(TINY_SPEC.frames_per_step, TINY.visual_dim, width=4),
    }
    options = {"audio": {"dim": TINY.audio_dim, "width": 4}}
    options["visual"] = {"dim": TINY.visual_dim, "width": 4}
    save_extractors(path, TINY_SPEC, encoders, options)
    return path


def write_checkpoint(path: Path, model: LoCo, config: Config) -> Path:
    """A checkpoint with the state layout of train/loop.py (tiny extractors beside it)."""
    write_extractors(path.parent / "extractors.pt")
    state = {
        "model": model.state_dict(),
        "ema": model.state_dict(),
        "optimizer": torch.optim.AdamW(model.parameters()).state_dict(),
        "epoch": 1,
        "best_score": 0.0,
        "normalizer": 20.0,
        "config": config.to_dict(),
        "class_names": CLASSES,
    }
    save_checkpoint(path, state)
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = to_onnx.main(list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny checkpoint exported by the CLI, with --fp16 and --hop 2."""
    root = tmp_path_factory.mktemp("export")
    config = Config(model=TINY, data=DataConfig(step_seconds=0.25, step_offset=0.125))
    model = perturbed(TINY)
    checkpoint = write_checkpoint(root / "tiny.pt", model, config)
    out = root / "model"
    status, stdout, stderr = run_cli(
        "--checkpoint", str(checkpoint), "--out", str(out), "--fp16", "--hop", str(HOP)
    )
    assert status == 0, stdout + stderr
    return {
        "checkpoint": checkpoint,
        "out": out,
        "stdout": stdout,
        "model": model,
        "config": config,
    }


def test_cli_reports_each_stage_and_the_errors(tiny):
    stdout = tiny["stdout"]
    assert "[1/2] onnx" in stdout and "[2/2] fp16" in stdout
    # fp32 window graph and the two step graphs (checked) and fp16 (reported)
    assert stdout.count("scores    max abs error") == 4
    assert stdout.count("segments  max abs error") == 2
    assert stdout.count("distances max abs error") == stdout.count("state     max abs error") == 2
    assert stdout.count("hashes and signatures verified") == 2  # the card after each format
    card = read_bundle(tiny["out"])
    assert set(card.files) == {
        WINDOW_GRAPH,
        WINDOW_FP16_GRAPH,
        "loco_step.onnx",
        "loco_step_offline.onnx",
        "audio_extractor.onnx",
        "visual_extractor.onnx",
        "loco.pt",
        "extractors.pt",
    }


def test_metadata_round_trips(tiny):
    info = window_info(tiny["config"], CLASSES, TINY.window, HOP, step_hop=HOP)
    expected = embedded_metadata(info, package_version())
    assert expected["kind"] == "window" and expected["hop_steps"] == HOP
    assert expected["classes"] == CLASSES and expected["step_seconds"] == 0.25
    for name in (WINDOW_GRAPH, WINDOW_FP16_GRAPH):
        assert read_metadata(tiny["out"] / name) == expected
    assert read_bundle(tiny["out"]).window == info
    restored = ModelConfig(**read_metadata(tiny["out"] / WINDOW_GRAPH)["model"])
    assert restored == TINY


def test_graph_meets_the_export_constraints(tiny):
    path = tiny["out"] / "loco.onnx"
    model = onnx.load(str(path))
    assert [(o.domain, o.version) for o in model.opset_import if o.domain == ""] == [("", 18)]
    assert readiness.check_trt_readiness(model) == []
    nodes = onnx.inliner.inline_local_functions(model).graph.node
    ops = {node.op_type for node in nodes}
    assert not ops & FORBIDDEN
    graph = window_graph(tiny["model"], TINY.window)
    inputs = window_export.window_inputs(TINY, TINY.window, count=1)[0]
    layer_norms = graphs.count_layer_norms(graph, inputs)
    assert sum(node.op_type == "LayerNormalization" for node in nodes) == layer_norms > 0
    assert not ops & {"ReduceMean", "Sqrt"}  # no LayerNorm decomposed
    shapes = {
        value.name: [
            d.dim_value if d.HasField("dim_value") else None
            for d in value.type.tensor_type.shape.dim
        ]
        for value in [*model.graph.input, *model.graph.output]
    }
    points = 32 + 16 + 8
    assert shapes == {
        "visual": [1, 32, 24],
        "audio": [1, 32, 16],
        "mask": [1, 32],
        "scores": [1, points, 5],
        "segments": [1, points, 5, 2],
    }


def test_onnx_runtime_matches_torch_on_fresh_padded_windows(tiny):
    graph = window_graph(tiny["model"], TINY.window)
    windows = window_export.window_inputs(TINY, TINY.window, count=4, seed=123)
    assert [int(w["mask"].sum()) for w in windows] == [32, 23, 14, 5]
    errors = graphs.verify_against_torch(graph, tiny["out"] / "loco.onnx", windows)
    assert set(errors) == {"scores", "segments"}
    assert all(error.max_abs <= graphs.TOLERANCE for error in errors.values()), errors
    half = graphs.verify_against_torch(graph, tiny["out"] / "loco_fp16.onnx", windows)
    assert half["scores"].max_abs < 1e-2  # fp16: reported, loosely bounded here


def test_torch_and_onnxruntime_backends_agree(tiny):
    with (
        open_backend("torch", tiny["checkpoint"]) as torch_backend,
        open_backend("onnxruntime", tiny["out"] / "loco.onnx") as onnx_backend,
    ):
        assert isinstance(torch_backend, TorchBackend) and torch_backend.name == "torch"
        assert torch_backend.input_specs == onnx_backend.input_specs
        assert torch_backend.output_names == onnx_backend.output_names == ["scores", "segments"]
        # the default hop; the torch backend runs no step graph
        assert torch_backend.metadata == {**onnx_backend.metadata, "hop_steps": 4, "step_hop": 0}
        for window in window_export.window_inputs(TINY, TINY.window, count=3, seed=7):
            expected, got = torch_backend.run(window), onnx_backend.run(window)
            for name in ("scores", "segments"):
                assert got[name].dtype == expected[name].dtype == np.float32
                np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-4)


def test_config_file_replaces_decode_and_data_only(tmp_path):
    config = Config(model=TINY)
    other = tmp_path / "decode.yaml"
    other.write_text("decode: {score_threshold: 0.2}\ndata: {step_seconds: 0.5}\n")
    updated = window_export.apply_config_file(config, other)
    assert updated.decode.score_threshold == 0.2 and updated.data.step_seconds == 0.5
    assert updated.model == TINY
    mismatched = tmp_path / "model.yaml"
    mismatched.write_text("model: {embed_dim: 64}\n")
    with pytest.raises(ConfigError, match="model.embed_dim differ from the checkpoint's"):
        window_export.apply_config_file(config, mismatched)


def test_int8_is_calibrated_on_clips_and_runs_in_onnx_runtime(tiny, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for index in range(2):
        make_clip(videos / f"clip{index}.mp4", duration=4.0, tone_hz=300.0 + 200 * index)
    out = tmp_path / "model"
    status, stdout, stderr = run_cli(
        "--checkpoint", str(tiny["checkpoint"]), "--out", str(out), "--int8", "--calib", str(videos)
    )
    assert status == 0, stdout + stderr
    assert "2 calibration windows from 2 videos" in stdout
    path = out / WINDOW_INT8_GRAPH
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert readiness.check_trt_readiness(path) == []
    assert WINDOW_INT8_GRAPH in read_bundle(out).files
    window = window_export.window_inputs(TINY, TINY.window, count=1, seed=3)[0]
    inputs = (window["visual"], window["audio"], window["mask"])
    with ModelDir(out) as fp32, ModelDir(out, precision="int8") as int8:
        expected, got = fp32.run_window(*inputs), int8.run_window(*inputs)
    assert got[0].shape == expected[0].shape and not np.array_equal(got[0], expected[0])
    assert np.max(np.abs(got[0] - expected[0])) < 0.05  # int8 scores stay near fp32's


def test_int8_without_calibration_videos_is_refused(tiny, tmp_path):
    with pytest.raises(SystemExit) as exited:
        run_cli("--checkpoint", str(tiny["checkpoint"]), "--out", str(tmp_path / "m"), "--int8")
    assert exited.value.code == 2
    (tmp_path / "empty").mkdir()
    args = ["--checkpoint", str(tiny["checkpoint"]), "--out", str(tmp_path / "m"), "--int8"]
    status, _, stderr = run_cli(*args, "--calib", str(tmp_path / "empty"))
    assert status == 2 and "holds no video" in stderr
    assert not (tmp_path / "m").exists()  # refused before any work


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_trt_without_tensorrt_exits_2_after_a_complete_directory(tiny, tmp_path, monkeypatch):
    """--trt after the export: the ONNX stages are the fixture's (its directory, copied, as they
    would write it again), the TensorRT stage runs for real."""
    out = tmp_path / "model"

    def exported_again(job, *_: object, **__: object) -> Path:
        shutil.copytree(tiny["out"], job.out, dirs_exist_ok=True)
        return job.out

    monkeypatch.setattr(importlib.import_module("export.job"), "export_model_dir", exported_again)
    status, stdout, stderr = run_cli(
        "--checkpoint", str(tiny["checkpoint"]), "--out", str(out), "--trt"
    )
    assert status == 2 and "TensorRT Python package not found" in stderr, stdout + stderr
    assert "loco.onnx: ready for TensorRT" in stdout and not list(out.glob("*.engine"))
    with ModelDir(out) as model:  # everything but the engines is written and verified
        assert model.info.classes == tuple(CLASSES)


def test_extractors_of_another_size_are_refused(tiny, tmp_path):
    other = tmp_path / "other_extractors.pt"
    encoders = {
        "audio": AudioEncoder(TINY_SPEC.sample_rate, 12, width=4),  # TINY takes 16-d audio
        "visual": VisualEncoder(TINY_SPEC.frames_per_step, TINY.visual_dim, width=4),
    }
    options = {"audio": {"dim": 12, "width": 4}, "visual": {"dim": TINY.visual_dim, "width": 4}}
    save_extractors(other, TINY_SPEC, encoders, options)
    args = ["--checkpoint", str(tiny["checkpoint"]), "--extractors", str(other)]
    status, _, stderr = run_cli(*args, "--out", str(tmp_path / "m"))
    assert status == 1
    assert "audio network gives 12-d features but" in stderr and "takes 16-d audio" in stderr


def test_bad_checkpoint_path_exits_2_without_a_traceback(tmp_path):
    missing = tmp_path / "missing.pt"
    result = subprocess.run(
        [sys.executable, str(ROOT / "export" / "to_onnx.py"), "--checkpoint", str(missing)]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"error: checkpoint {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_refusals_exit_2_with_the_reason(tiny, tmp_path, monkeypatch):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    status, _, stderr = run_cli("--checkpoint", str(corrupt), "--out", str(tmp_path))
    assert status == 2 and "cannot be read safely" in stderr
    status, _, stderr = run_cli(
        "--checkpoint", str(tiny["checkpoint"]), "--out", str(tmp_path), "--window", "30"
    )
    assert status == 2 and "must be a positive multiple of the top level's stride 4" in stderr
    lonely = tmp_path / "lonely" / "loco.pt"  # no extractors.pt beside it
    lonely.parent.mkdir()
    lonely.write_bytes(tiny["checkpoint"].read_bytes())
    status, _, stderr = run_cli("--checkpoint", str(lonely), "--out", str(tmp_path / "m"))
    assert status == 2 and "extractors.pt does not exist: pass --extractors" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["no_lcc", "no_cdp", "baseline", "audio_only", "visual_only"])
def test_every_variant_exports_and_matches_torch(variant, tmp_path):
    smaller = {"num_levels": 2, "regression_ranges": [[0, 4], [4, 10000]], "num_proj_layers": 1}
    model_config = dataclasses.replace(TINY, variant=variant, **smaller)
    config = Config(model=model_config)
    model = perturbed(model_config)
    window = 2 * TINY.window  # another T than the model's: the network is length-agnostic
    path = window_export.export_window_graph(model, config, CLASSES, tmp_path, window, HOP)
    graph = window_graph(model, window)
    windows = window_export.window_inputs(model_config, window, count=3)
    assert graphs.check_graph(path, graphs.count_layer_norms(graph, windows[0])) == []
    errors = graphs.verify_against_torch(graph, path, windows)
    assert all(error.max_abs <= graphs.TOLERANCE for error in errors.values()), errors
    assert read_metadata(path)["window"] == window


@pytest.mark.slow
def test_paper_size_exports_and_matches_torch(tmp_path):
    config = load_config(ROOT / "configs" / "unav100_loco.yaml")
    torch.manual_seed(0)
    model = LoCo(config.model).eval()
    names = [f"class{i}" for i in range(config.model.num_classes)]
    path = window_export.export_window_graph(model, config, names, tmp_path, config.model.window)
    assert graphs.check_graph(path, layer_norms=0) == []  # 0: skip the count (a forward)
    nodes = onnx.load(str(path)).graph.node
    assert any(node.op_type == "LayerNormalization" for node in nodes)
    graph = window_graph(model, config.model.window)
    padded = window_export.window_inputs(config.model, config.model.window, count=2)[1:]
    errors = graphs.verify_against_torch(graph, path, padded)
    assert all(error.within(graphs.TOLERANCE) for error in errors.values()), errors
    assert errors["scores"].max_abs <= graphs.TOLERANCE
