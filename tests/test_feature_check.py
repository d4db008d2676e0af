"""The feature check: a linear probe that finds labels where features carry them and warns where
they do not (annotations that do not match the features), and counts dead dims and NaN/inf."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loco_stream.config import load_config
from tests.planted import make_planted_dataset, planted_config_overrides
from train.data import VideoRecord
from train.feature_check import MULTIPLE, check_features, main, report_text, step_labels

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("planted")
    annotations = make_planted_dataset(root, {"train": 24, "validation": 8})
    return root, planted_config_overrides(root, annotations)


def test_features_that_carry_the_events_separate_the_classes(planted) -> None:
    _, overrides = planted
    reports = check_features(load_config(SMOKE, overrides), progress=False)
    assert [r.modality for r in reports] == ["visual", "audio"]
    for report in reports:
        assert report.separates, report.line()
        assert report.probe_f1 > 0.8 and report.chance_f1 < 0.4
        assert report.dead == report.constant == report.non_finite == 0
    assert "warning" not in report_text(reports)


def test_annotations_that_do_not_match_the_features_are_warned_about(planted, tmp_path, capsys):
    root, overrides = planted
    database = json.loads((root / "annotations.json").read_text())["database"]
    ids = sorted(database)
    rng = np.random.default_rng(0)
    shuffled = dict(zip(ids, rng.permutation(ids), strict=True))  # each video gets another's events
    moved = {v: {**database[v], "annotations": database[shuffled[v]]["annotations"]} for v in ids}
    for entry in moved.values():  # keep every segment inside its new video
        entry["annotations"] = [
            e for e in entry["annotations"] if e["segment"][1] <= entry["duration"]
        ]
    wrong = tmp_path / "shuffled.json"
    wrong.write_text(json.dumps({"database": moved}))
    status = main(["--config", str(SMOKE), *overrides, f"data.annotations={wrong}"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "warning: the visual features do not tell the event classes apart" in printed
    assert "warning: the audio features do not tell the event classes apart" in printed


def test_dead_dimensions_and_nan_are_counted_and_nan_is_warned_about(planted, tmp_path) -> None:
    root, overrides = planted
    features = tmp_path / "features"
    features.mkdir()
    for path in (root / "features").iterdir():
        array = np.load(path)
        if path.name.endswith("_audio.npy"):
            array[:, 0] = 0.0  # a dead dimension
            if path.name.startswith("train_0000"):
                array[3, 2] = np.nan
        np.save(features / path.name, array)
    reports = check_features(
        load_config(SMOKE, [*overrides, f"data.feature_dir={features}"]), progress=False
    )
    audio = reports[1]
    assert (audio.dead, audio.non_finite) == (1, 1)
    assert not audio.separates and "NaN or infinite" in audio.warning()


def test_a_step_inside_two_classes_is_left_out_and_one_inside_one_is_labelled() -> None:
    record = VideoRecord("v", 4.0, np.array([[0.0, 2.0], [1.0, 3.0]]), np.array([2, 0]))
    labels = step_labels(record, 16, 0.25, 0.125)  # centres 0.125, 0.375, ...
    assert labels[0] == 3 and labels[5] == MULTIPLE and labels[10] == 1 and labels[15] == 0


@pytest.mark.slow
def test_loco_train_check_only_stops_after_the_feature_check(tmp_path: Path, capsys) -> None:
    from labelled_clips import write_labelled_set

    from train.pipeline import main

    videos, annotations = write_labelled_set(tmp_path / "data", train=12, test=2, seconds=10.0)
    work = tmp_path / "work"
    arguments = ["--videos", str(videos), "--annotations", str(annotations)]
    arguments += ["--out", str(tmp_path / "model"), "--workdir", str(work)]
    arguments += ["--extractors", "synthetic", "--workers", "1", "--check-only"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "feature check (linear probe" in printed and "--check-only" in printed
    done = json.loads((work / "stages.json").read_text())["done"]
    assert set(done) == {"check", "extractors", "features"}
    assert "probe macro-F1 visual" in done["features"]["outcome"]
    check = json.loads((work / "feature_check.json").read_text())
    assert set(check) == {"visual", "audio"} and check["audio"]["separates"]
    assert not (tmp_path / "model").exists()
