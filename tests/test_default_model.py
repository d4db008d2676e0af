"""The packaged models (the default and `--model efficientnet`): complete, small, TensorRT-ready,
re-exportable (the default), and they detect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.trt_readiness import check_trt_readiness
from loco_stream.bundle import DEFAULT_MODEL_DIR, PACKAGED_MODELS
from loco_stream.evaluation import evaluate, load_predictions
from loco_stream.model_dir import ModelDir
from loco_stream.offline import detect_clip
from loco_stream.synth import sample_scenario, write_clip

ROOT = Path(__file__).resolve().parents[1]
# everything shipped, in bytes: the window graph, the stream's and loco-detect's step graphs (their
# fp16 checkpoint's weights stored as fp16), the extractors and the two checkpoints
SIZE_LIMIT = 30 * 2**20


def step_feed(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A call of the step graph at ``path``: random features and state, every step valid."""
    import onnxruntime as ort

    feed = {}
    for spec in ort.InferenceSession(str(path)).get_inputs():
        feed[spec.name] = 0.3 * rng.standard_normal(spec.shape, dtype=np.float32)
    feed["valid"] = np.ones_like(feed["valid"])
    feed["advance"], feed["odd"] = np.ones_like(feed["advance"]), np.ones_like(feed["odd"])
    return feed


@pytest.fixture(scope="module")
def model() -> ModelDir:
    return ModelDir()  # no path: the packaged default


def test_default_model_is_complete_and_small(model):
    files = sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir())
    for name in (
        "loco.onnx",
        "loco_step.onnx",
        "loco_step_offline.onnx",
        "audio_extractor.onnx",
        "visual_extractor.onnx",
        "loco.pt",
    ):
        assert name in files
    assert sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) < SIZE_LIMIT
    assert len(model.info.classes) == 16 and model.info.window == 256
    assert model.step_graph is not None and model.info.step_hop == 4  # the stream's default
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert card["results"]["test_average_mAP"] > 0


def test_default_graphs_are_tensorrt_ready():
    for name in ("loco.onnx", "loco_step.onnx", "loco_step_offline.onnx"):
        assert check_trt_readiness(DEFAULT_MODEL_DIR / name) == [], name
    for name in ("audio_extractor.onnx", "visual_extractor.onnx"):
        assert check_trt_readiness(DEFAULT_MODEL_DIR / name) == [], name


@pytest.mark.slow
def test_default_model_detects_the_events_of_a_fresh_clip(model, tmp_path):
    """A clip the model never saw (a seed outside every split used for training): its events are
    found with the right class and boundaries."""
    hits = 0
    truth, predictions = {}, {}
    for index in range(8):  # 25 events: enough that one hard clip does not decide
        scenario = sample_scenario(seed=777, index=index, duration=30.0, split="fresh")
        path = tmp_path / f"{scenario.video_id}.mp4"
        write_clip(scenario, path)
        entries, duration = detect_clip(model, path)
        assert duration == pytest.approx(30.0, abs=0.25)
        truth[scenario.video_id] = [(s, e, k) for s, e, k in scenario.events]
        predictions[scenario.video_id] = entries
        for start, end, label in scenario.events:
            confident = [p for p in entries if p["score"] >= 0.3 and p["label_id"] == label]
            hits += any(
                min(end, p["segment"][1]) - max(start, p["segment"][0])
                > 0.5 * (max(end, p["segment"][1]) - min(start, p["segment"][0]))
                for p in confident
            )
    total = sum(len(v) for v in truth.values())
    assert hits >= 0.6 * total, f"{hits} of {total} events found"
    result = evaluate(truth, load_predictions({"results": predictions}))
    assert result.mAP[0] > 50.0  # at tIoU 0.1


def test_each_detection_s_peak_lies_in_its_segment_and_a_found_event_s_in_the_event(
    model, tmp_path
):
    """The trained model on fresh clips: the moment a segment was scored at lies within the
    segment the model regressed from it, and, for a confident detection of a true event, within
    that event (a point's index taken for its step, or a window's offset left out, would not)."""
    inside = 0
    for index in range(2):
        scenario = sample_scenario(seed=778, index=index, duration=30.0, split="fresh")
        path = tmp_path / f"{scenario.video_id}.mp4"
        write_clip(scenario, path)
        entries, _ = detect_clip(model, path)
        assert entries
        for entry in entries:
            start, end = entry["segment"]
            assert start - 0.01 <= entry["peak"] <= end + 0.01, entry
        for start, end, label in scenario.events:
            best = max(
                (e for e in entries if e["label_id"] == label and e["score"] >= 0.3),
                key=lambda e: e["score"],
                default=None,
            )
            inside += best is not None and start <= best["peak"] <= end
    assert inside >= 2


@pytest.mark.slow
def test_default_checkpoints_re_export_to_the_shipped_graphs(tmp_path):
    """``python -m export`` of the shipped checkpoints rebuilds the shipped directory: every graph
    computes what the shipped one does (1e-5), and loco-detect and loco-stream run it."""
    done = subprocess.run(
        [sys.executable, "-m", "export", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    feeds = {
        "loco.onnx": {
            "visual": rng.standard_normal((1, 256, 128), dtype=np.float32),
            "audio": rng.standard_normal((1, 256, 128), dtype=np.float32),
            "mask": np.ones((1, 256), np.float32),
        },
        "audio_extractor.onnx": {"waveform": 0.3 * rng.standard_normal((1, 4000), np.float32)},
        "visual_extractor.onnx": {"frames": rng.integers(0, 256, (1, 4, 96, 96, 3), np.uint8)},
        "loco_step.onnx": step_feed(DEFAULT_MODEL_DIR / "loco_step.onnx", rng),
    }
    for name, feed in feeds.items():
        shipped = ort.InferenceSession(str(DEFAULT_MODEL_DIR / name)).run(None, feed)
        fresh = ort.InferenceSession(str(tmp_path / name)).run(None, feed)
        for new, old in zip(fresh, shipped, strict=True):
            np.testing.assert_allclose(new, old, atol=1e-5, err_msg=name)
    scenario = sample_scenario(seed=5, index=0, duration=8.0, split="fresh")
    clip = tmp_path / "clip.mp4"
    write_clip(scenario, clip)
    detect = [sys.executable, "-m", "loco_stream.cli.detect", str(clip), "--model", str(tmp_path)]
    done = subprocess.run(
        [*detect, "--output", str(tmp_path / "r.json")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["results"]["clip"]
    stream = [sys.executable, "-m", "loco_stream.cli.stream", "--input", str(clip)]
    done = subprocess.run(
        [*stream, "--model", str(tmp_path), "--output", str(tmp_path / "events.jsonl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "events.jsonl").read_text().strip()


def test_the_efficientnet_model_is_small_tensorrt_ready_and_detects_fresh_clips(tmp_path):
    """The second packaged model (``--model efficientnet``): EfficientNet-Lite0's stage 5 and the
    trained head, no torch checkpoints, under 30 MB; it finds the events of clips it never saw."""
    folder = PACKAGED_MODELS["efficientnet"]
    assert sum(p.stat().st_size for p in folder.iterdir()) < SIZE_LIMIT
    assert not (folder / "loco.pt").exists() and not (folder / "extractors.pt").exists()
    for name in ("loco.onnx", "loco_step.onnx", "visual_extractor.onnx"):
        assert check_trt_readiness(folder / name) == [], name
    with ModelDir("efficientnet") as model:
        assert model.path == folder and len(model.info.classes) == 16
        assert model.card.extractors["visual"].network == "VisualMapHead"
        assert model.step_graph is not None
        hits = total = 0
        for index in range(4):
            scenario = sample_scenario(seed=779, index=index, duration=30.0, split="fresh")
            path = tmp_path / f"{scenario.video_id}.mp4"
            write_clip(scenario, path)
            entries, _ = detect_clip(model, path)
            for start, end, label in scenario.events:
                total += 1
                hits += any(
                    e["label_id"] == label
                    and e["score"] >= 0.3
                    and min(end, e["segment"][1]) - max(start, e["segment"][0]) > 0
                    for e in entries
                )
    assert hits >= 0.6 * total, f"{hits} of {total} events found"
