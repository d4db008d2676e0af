"""Bad input to training: each case gets a clear message or a documented, tested handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loco_stream.config import ConfigError, load_config
from tests.planted import make_planted_dataset, planted_config_overrides
from train.data import DataError, load_features, load_records
from train.dataset import WindowDataset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture
def planted(tmp_path):
    annotations = make_planted_dataset(tmp_path, {"train": 3})
    config = load_config(SMOKE, planted_config_overrides(tmp_path, annotations))
    return tmp_path, annotations, config


def features_of(config, video_id):
    return load_features(config.data.feature_dir, video_id, config.data, config.model)


def test_missing_feature_file(planted):
    root, _, config = planted
    (root / "features" / "train_0000_audio.npy").unlink()
    with pytest.raises(DataError, match="train_0000_audio.npy is missing"):
        features_of(config, "train_0000")


def test_truncated_feature_file(planted):
    root, _, config = planted
    path = root / "features" / "train_0001_visual.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or not a .npy array"):
        features_of(config, "train_0001")


def test_nan_in_features(planted):
    root, _, config = planted
    path = root / "features" / "train_0002_audio.npy"
    audio = np.load(path)
    audio[3, 1] = np.nan
    np.save(path, audio)
    with pytest.raises(DataError, match="1 NaN/inf values in its audio features"):
        features_of(config, "train_0002")


def test_wrong_feature_dimension_names_the_config_key(planted):
    _, _, config = planted
    config.model.audio_dim = 9
    with pytest.raises(DataError, match="model.audio_dim is 9"):
        features_of(config, "train_0000")


def test_audio_and_visual_of_different_lengths_are_truncated_to_the_shorter(planted):
    root, _, config = planted
    path = root / "features" / "train_0000_audio.npy"
    audio = np.load(path)
    np.save(path, audio[:-5])
    with pytest.warns(UserWarning, match="truncated to the shorter"):
        visual, loaded_audio = features_of(config, "train_0000")
    assert len(visual) == len(loaded_audio) == len(audio) - 5


def write_annotations(path: Path, annotations: list, duration: float = 10.0) -> Path:
    database = {"v": {"subset": "train", "duration": duration, "annotations": annotations}}
    path.write_text(json.dumps({"database": database}))
    return path


def test_segments_outside_the_video_are_clipped_or_dropped(tmp_path):
    path = write_annotations(
        tmp_path / "a.json",
        [
            {"segment": [-1.0, 2.0], "label": "a", "label_id": 0},
            {"segment": [8.0, 14.0], "label": "a", "label_id": 0},
            {"segment": [11.0, 12.0], "label": "b", "label_id": 1},
        ],
    )
    with pytest.warns(UserWarning, match=r"segment \[11.0, 12.0\] lies outside the video"):
        records, names = load_records(path, "train", num_classes=2)
    np.testing.assert_allclose(records[0].segments, [[0.0, 2.0], [8.0, 10.0]])
    assert names == {0: "a", 1: "b"}


def test_empty_annotation_list_is_a_background_clip(planted, tmp_path):
    root, annotations, config = planted
    database = json.loads(annotations.read_text())
    database["database"]["train_0000"]["annotations"] = []
    annotations.write_text(json.dumps(database))
    records, _ = load_records(annotations, "train", config.model.num_classes)
    empty = next(r for r in records if r.video_id == "train_0000")
    assert empty.segments.shape == (0, 2)
    item = WindowDataset([empty], config.data, config.model, train=True)[0]
    assert item["segments"].shape == (0, 2) and item["mask"].sum() > 0


def test_unknown_label_names_the_video_and_the_fix(tmp_path):
    path = write_annotations(
        tmp_path / "a.json", [{"segment": [1, 2], "label": "x", "label_id": 7}]
    )
    with pytest.raises(DataError, match=r"video v: label_id 7 .* set model.num_classes"):
        load_records(path, "train", num_classes=4)


def test_label_name_with_two_ids(tmp_path):
    path = write_annotations(
        tmp_path / "a.json",
        [
            {"segment": [1, 2], "label": "dog", "label_id": 0},
            {"segment": [3, 4], "label": "cat", "label_id": 0},
        ],
    )
    with pytest.raises(DataError, match="label_id 0 is 'cat' here but 'dog' elsewhere"):
        load_records(path, "train", num_classes=4)


def test_missing_split_lists_the_available_ones(planted):
    _, annotations, _ = planted
    with pytest.raises(DataError, match=r"no videos of split 'test'.*\['train'\]"):
        load_records(annotations, "test", num_classes=4)


def test_unknown_config_key_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\].*valid keys: epochs"):
        load_config(SMOKE, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(SMOKE, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="regression_ranges has 4 entries but"):
        load_config(SMOKE, ["model.num_levels=3"])


def test_train_cli_reports_bad_config_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(SMOKE), "model.varient=loco"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "train: error: unknown key(s) ['varient']" in done.stderr
    assert "Traceback" not in done.stderr
