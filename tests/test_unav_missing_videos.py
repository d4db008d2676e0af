"""loco-train on the part of UnAV-100 a user could download: ``--skip-missing-videos`` trains on the
annotated videos that exist, counts the missing ones per subset, and keeps the file's classes (ids
and names) even when all of a class's videos are gone. Only the check stage runs here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from media import make_clip

pytest.importorskip("torch", reason="loco-train needs the train extra")

import train.stages as stages  # noqa: E402
from train.input_check import check_inputs, video_files  # noqa: E402
from train.pipeline import main  # noqa: E402
from train.run_settings import InputError, Settings  # noqa: E402
from train.stage_progress import data_fingerprint  # noqa: E402

# UnAV-100's 100 classes with ids that are not the sorted names' order
NAMES = [f"class {(37 * i) % 100:02d}" for i in range(100)]
# the clips that exist (YouTube ids may start with "-" or "_"): id -> (subset, class id)
PRESENT = {
    "-5Dd9sCbUio": ("train", 0),
    "_x0Ab-12": ("train", 0),
    "a1B2c3D4e5F": ("train", 1),
    "Zz9-_yXwVuT": ("train", 2),
    "-vAl1dat10n": ("validation", 1),
    "-tEsT_clip0": ("test", 2),
}
# videos gone from their hosts: train videos of classes 3..99 (the only train events of those),
# validation 3 and 4, test 5, 6 and 0
MISSING = {
    **{f"-miss{k:06d}": ("train", k) for k in range(3, 100)},
    "-missVal001": ("validation", 3),
    "-missVal002": ("validation", 4),
    "-missTst001": ("test", 5),
    "-missTst002": ("test", 6),
    "-missTst003": ("test", 0),
}


def unav_entry(subset: str, class_id: int, duration: float) -> dict:
    return {
        "subset": subset,
        "duration": duration,
        "annotations": [
            {"segment": [0.2, 1.5], "label": NAMES[class_id], "label_id": class_id},
        ],
    }


def unav_database() -> dict:
    return {
        **{v: unav_entry(s, k, 2.0) for v, (s, k) in PRESENT.items()},
        **{v: unav_entry(s, k, 10.0) for v, (s, k) in MISSING.items()},
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The present clips: 2 s, picture and sound, named by their ids."""
    folder = tmp_path_factory.mktemp("unav_clips")
    for index, video_id in enumerate(PRESENT):
        make_clip(folder / f"{video_id}.mp4", tone_hz=300 + 100 * index)
    return folder


def inputs(
    tmp_path: Path, clips: Path, database: dict, present=tuple(PRESENT)
) -> tuple[Path, Path]:
    videos = tmp_path / "videos"
    videos.mkdir()
    for video_id in present:
        (videos / f"{video_id}.mp4").symlink_to(clips / f"{video_id}.mp4")
    annotations = tmp_path / "unav100_annotations.json"
    annotations.write_text(json.dumps({"version": "UnAV-100", "database": database}))
    return videos, annotations


def settings(videos: Path, annotations: Path, tmp_path: Path, skip: bool) -> Settings:
    return Settings(
        videos=videos,
        annotations=annotations,
        out=tmp_path / "m",
        workdir=tmp_path / "m.work",
        skip_missing_videos=skip,
    )


def test_ids_starting_with_a_dash_or_underscore_are_found(clips: Path) -> None:
    assert set(video_files(clips)) == set(PRESENT)


def test_missing_videos_are_refused_with_the_option_named(tmp_path: Path, clips: Path) -> None:
    videos, annotations = inputs(tmp_path, clips, unav_database())
    with pytest.raises(InputError) as error:
        check_inputs(settings(videos, annotations, tmp_path, skip=False))
    message = str(error.value)
    assert f"{len(MISSING)} annotated videos are not in {videos}" in message
    assert "--skip-missing-videos trains on the videos that exist" in message


def test_skipping_trains_on_the_videos_that_exist_with_the_file_classes(
    tmp_path: Path, clips: Path, capsys
) -> None:
    videos, annotations = inputs(tmp_path, clips, unav_database())
    checked = check_inputs(settings(videos, annotations, tmp_path, skip=True))
    assert set(checked["database"]) == set(PRESENT)
    assert checked["missing_videos"] == {"train": 97, "validation": 2, "test": 3}
    assert checked["classes"] == NAMES  # all 100, in the file's id order
    for video_id, (subset, class_id) in PRESENT.items():
        entry = checked["database"][video_id]
        assert entry["subset"] == subset
        assert [(e["label"], e["label_id"]) for e in entry["annotations"]] == [
            (NAMES[class_id], class_id)
        ]
    out, err = capsys.readouterr()
    assert (
        f"check: 102 of 108 annotated videos are missing from {videos} "
        "(train 97, validation 2, test 3); training on the 6 that exist"
    ) in out
    assert "check: warning: 97 of 100 classes have no train event left" in err
    assert f"{NAMES[3]}, {NAMES[4]}, {NAMES[5]}, {NAMES[6]}, {NAMES[7]} and 92 more" in err


def test_a_class_without_train_event_in_the_file_is_still_refused(
    tmp_path: Path, clips: Path
) -> None:
    database = unav_database()
    database["-miss000050"]["subset"] = "test"  # class 50 had no train event even in the file
    videos, annotations = inputs(tmp_path, clips, database)
    with pytest.raises(
        InputError, match=f"classes with no event in the train subset: {NAMES[50]};"
    ):
        check_inputs(settings(videos, annotations, tmp_path, skip=True))


def test_too_few_train_videos_left_is_an_error_naming_the_counts(
    tmp_path: Path, clips: Path
) -> None:
    present = ["-5Dd9sCbUio", "a1B2c3D4e5F", "-vAl1dat10n", "-tEsT_clip0"]
    videos, annotations = inputs(tmp_path, clips, unav_database(), present)
    with pytest.raises(InputError, match="only 2 of the 101 annotated train videos are in .* 3"):
        check_inputs(settings(videos, annotations, tmp_path, skip=True))


def test_no_video_at_all_is_an_error(tmp_path: Path, clips: Path) -> None:
    videos, annotations = inputs(tmp_path, clips, unav_database(), present=())
    with pytest.raises(InputError, match="none of the 108 annotated videos is in"):
        check_inputs(settings(videos, annotations, tmp_path, skip=True))


def test_without_a_validation_video_a_share_of_train_is_held_out(
    tmp_path: Path, clips: Path, capsys
) -> None:
    present = [v for v in PRESENT if v != "-vAl1dat10n"]
    videos, annotations = inputs(tmp_path, clips, unav_database(), present)
    checked = check_inputs(settings(videos, annotations, tmp_path, skip=True))
    assert checked["missing_videos"] == {"train": 97, "validation": 3, "test": 3}
    held = [v for v, e in checked["database"].items() if e["subset"] == "validation"]
    assert len(held) == 1 and held[0] in ("-5Dd9sCbUio", "_x0Ab-12")  # class 0 keeps a train one
    assert "none of the 3 validation videos is in" in capsys.readouterr().out


def test_the_option_changes_the_data_fingerprint(tmp_path: Path, clips: Path) -> None:
    videos, annotations = inputs(tmp_path, clips, unav_database())
    plain = data_fingerprint(settings(videos, annotations, tmp_path, skip=False))
    skipping = data_fingerprint(settings(videos, annotations, tmp_path, skip=True))
    assert plain != skipping


class StopAfterCheck(InputError):
    pass


def test_loco_train_gets_past_the_check_stage(
    tmp_path: Path, clips: Path, capsys, monkeypatch
) -> None:
    def stop(*args, **kwargs):
        raise StopAfterCheck("stopped after the check stage")

    monkeypatch.setattr(stages, "make_extractors", stop)
    videos, annotations = inputs(tmp_path, clips, unav_database())
    argv = [
        "--videos",
        str(videos),
        "--annotations",
        str(annotations),
        "--out",
        str(tmp_path / "m"),
    ]

    assert main(argv) == 2
    assert "--skip-missing-videos trains on the videos that exist" in capsys.readouterr().err

    assert main([*argv, "--skip-missing-videos"]) == 2
    out, err = capsys.readouterr()
    assert "training on the 6 that exist" in out
    assert "loco-train: error: stopped after the check stage" in err
    work = tmp_path / "m.work"
    checked = json.loads((work / "annotations.json").read_text())
    assert checked["classes"] == NAMES
    assert checked["missing_videos"] == {"train": 97, "validation": 2, "test": 3}
    assert set(checked["database"]) == set(PRESENT)
    assert "check" in json.loads((work / "stages.json").read_text())["done"]
    assert not (tmp_path / "m").exists()
