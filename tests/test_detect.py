"""Offline detection and feature extraction from files: consistency with the stream, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loco_stream.cli.detect import main as detect_main
from loco_stream.features.media import extract_file
from loco_stream.model_dir import ModelDir
from tests.media import make_clip
from tests.step_features import assert_file_equals_stream
from train.extract_features import main as extract_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir) -> ModelDir:
    return ModelDir(tiny_model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Good and bad media, one of each kind."""
    folder = tmp_path_factory.mktemp("clips")
    made = {
        "good": make_clip(folder / "good.mp4", duration=3.0, fps=16, audio_rate=16000, channels=1),
        "stereo48k": make_clip(folder / "stereo48k.mp4", duration=3.0, fps=25, audio_rate=48000),
        "rate44k": make_clip(folder / "rate44k.mp4", duration=3.0, fps=30, audio_rate=44100),
        "rate8k": make_clip(folder / "rate8k.mp4", duration=3.0, audio_rate=8000, channels=1),
        "vfr": make_clip(
            folder / "vfr.mp4",
            duration=3.0,
            video_pts_ms=[0, 40, 200, 230, 500, 1000, 1010, 1400, 2000, 2500, 2900],
        ),
        "silent": make_clip(folder / "silent.mp4", duration=3.0, audio_rate=None),
        "short": make_clip(folder / "short.mp4", duration=0.1, fps=30),
    }
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    made["garbage"] = garbage
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(made["good"].read_bytes()[: made["good"].stat().st_size // 2])
    made["truncated"] = truncated
    return made


def test_file_features_equal_features_fed_step_by_step(tiny_model, clips):
    """The file path (loco-detect, extract_features) and item-by-item feeding (the stream) agree
    exactly, however the audio is chunked and however the two modalities interleave."""
    assert assert_file_equals_stream(tiny_model.extractors, clips["stereo48k"]) == 12  # 3 s


def test_other_rates_channels_and_variable_frame_rate_give_full_features(tiny_model, clips):
    for name in ("stereo48k", "rate44k", "rate8k", "vfr"):
        visual, audio = extract_file(clips[name], tiny_model.spec, tiny_model.step_features)
        assert len(visual) == len(audio) == 12, name
        assert np.isfinite(visual).all() and np.isfinite(audio).all()


def test_detect_batch_with_bad_files_keeps_the_good_results(tiny_model, clips, tmp_path, capsys):
    output = tmp_path / "results.json"
    videos = [clips[k] for k in ("good", "garbage", "silent", "short", "rate8k", "vfr")]
    code = detect_main(
        [*map(str, videos), "--output", str(output), "--model", str(tiny_model.path)]
        + ["--plot", str(tmp_path / "plots")]
    )
    err = capsys.readouterr().err
    assert code == 1
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"good", "rate8k", "vfr"}
    for entries in results.values():
        assert entries and all(0 <= e["segment"][0] <= e["segment"][1] <= 3.0 for e in entries)
    assert "skipped" in err and "garbage.mp4' could not be read" in err
    assert "silent.mp4 has no audio track" in err
    assert "short.mp4 is shorter than one step" in err
    assert (tmp_path / "plots" / "good.png").stat().st_size > 1000


def test_truncated_file_is_detected_up_to_where_it_breaks(tiny_model, clips):
    with pytest.warns(UserWarning):
        visual, _ = extract_file(clips["truncated"], tiny_model.spec, tiny_model.step_features)
    assert 0 < len(visual) < 12


def test_detect_with_a_broken_model_directory_fails_cleanly(tiny_model, clips, tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "loco.onnx").write_bytes((tiny_model.path / "loco.onnx").read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "loco_stream.cli.detect", str(clips["good"])]
        + ["--output", str(tmp_path / "r.json"), "--model", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "model_card.json: missing" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.json").exists()


def test_extract_features_writes_unav_layout_and_reports_bad_files(tiny_model, clips, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("good", "silent", "garbage"):
        (videos / clips[name].name).write_bytes(clips[name].read_bytes())
    out = tmp_path / "features"
    code = extract_main(
        ["--videos", str(videos), "--out", str(out), "--model", str(tiny_model.path)]
    )
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good_audio.npy", "good_visual.npy"]
    visual = np.load(out / "good_visual.npy")
    assert visual.shape == (12, tiny_model.info.visual_dim) and visual.dtype == np.float32
