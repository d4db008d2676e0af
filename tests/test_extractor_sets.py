"""The shipped extractor sets on real media: a file's features equal the stream's step by step
for every set and both timings, ``train.extract_features`` writes them under the config
patterns, and awkward media (one frame, short audio, small frames) is handled as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.__main__ import main as export_main
from loco_stream.cli.detect import main as detect_main
from loco_stream.config import Config, DataConfig, load_config
from loco_stream.features.media import MediaError, extract_file, file_steps
from loco_stream.model import LoCo
from loco_stream.model.checkpoint import save_checkpoint
from loco_stream.model_dir import ModelDir
from loco_stream.runtime.extractor_graphs import ExtractorGraphs
from tests.media import make_clip
from tests.step_features import assert_file_equals_stream, file_features
from tests.tiny_model import tiny_model_config
from train.extract_features import main as extract_main
from train.extractor_sets import SETS, TIMINGS, PretrainedFiles, write_extractor_set

ROOT = Path(__file__).resolve().parents[1]
torchvggish = pytest.importorskip("torchvggish.torchvggish", reason="a dev dependency")


@pytest.fixture(scope="module")
def random_vggish(tmp_path_factory) -> Path:
    """A VGGish checkpoint in the official port's layout with random weights (the real file is a
    288-MB download): the sets' plumbing does not depend on what the weights learned."""
    path = tmp_path_factory.mktemp("vggish") / "random_vggish.pth"
    torch.manual_seed(0)
    torch.save(torchvggish._vgg(postprocess=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def set_dirs(tmp_path_factory, random_vggish):
    """set name, timing -> folder of its exported graphs (written on first use)."""
    root = tmp_path_factory.mktemp("sets")
    written: dict[tuple[str, str], Path] = {}

    def get(name: str, timing: str) -> Path:
        if (name, timing) not in written:
            files = PretrainedFiles(vggish=random_vggish, official=False)
            write_extractor_set(name, root / f"{name}-{timing}", timing, files)
            written[name, timing] = root / f"{name}-{timing}"
        return written[name, timing]

    return get


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "stereo48k": make_clip(folder / "stereo48k.mp4", duration=3.0, fps=25, audio_rate=48000),
        "one_frame": make_clip(folder / "one_frame.mp4", duration=2.0, video_pts_ms=[0]),
        "half_second": make_clip(folder / "half_second.mp4", duration=0.5, fps=16),
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frames of 160x120 are smaller")
@pytest.mark.parametrize("timing", sorted(TIMINGS))
@pytest.mark.parametrize("name", sorted(SETS))
def test_file_features_equal_stream_features_for_every_set_and_timing(
    name, timing, set_dirs, clips
):
    extractors = ExtractorGraphs(set_dirs(name, timing), threads=1)
    assert extractors.spec == SETS[name].spec(timing)
    steps = assert_file_equals_stream(extractors, clips["stereo48k"])
    assert steps == int(3.0 / TIMINGS[timing].step_seconds + 1e-9)
    visual, audio = file_features(extractors, clips["stereo48k"])
    assert visual.shape[1] == extractors.visual_dim and audio.shape[1] == extractors.audio_dim
    assert np.isfinite(visual).all() and np.isfinite(audio).all()
    assert np.abs(np.diff(audio, axis=0)).max() > 0  # the first steps are padded: they differ
    extractors.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frames of 160x120 are smaller")
def test_extract_features_writes_a_sets_features_under_its_config_names(
    set_dirs, clips, tmp_path, capsys
):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(clips["stereo48k"].read_bytes())
    out = tmp_path / "features"
    graphs = out / "extractors" / "efficientnet-logmel-unav100-1x224"
    graphs.mkdir(parents=True)
    for graph in set_dirs("efficientnet-logmel", "unav100").iterdir():
        (graphs / graph.name).write_bytes(graph.read_bytes())  # written once, then kept
    arguments = ["--videos", str(videos), "--out", str(out), "--extractors"]
    assert extract_main([*arguments, "efficientnet-logmel", "--timing", "unav100"]) == 0
    assert "writing the efficientnet-logmel extractor graphs" not in capsys.readouterr().err
    visual, audio = np.load(out / "clip_efficientnet.npy"), np.load(out / "clip_logmel.npy")
    assert visual.shape == (9, 128) and audio.shape == (9, 128)  # 3 s / 0.32 s
    assert visual.dtype == audio.dtype == np.float32
    # a folder of two graphs (loco-train's WORKDIR/extractors): the same features, named as asked
    named = tmp_path / "named"
    folder_arguments = ["--videos", str(videos), "--out", str(named), "--extractors", str(graphs)]
    assert extract_main([*folder_arguments, "--names", "efficientnet", "logmel"]) == 0
    np.testing.assert_array_equal(np.load(named / "clip_efficientnet.npy"), visual)
    np.testing.assert_array_equal(np.load(named / "clip_logmel.npy"), audio)
    # the VGGish set needs its checkpoint: one line, exit status 2
    assert extract_main([*arguments, "efficientnet-vggish"]) == 2
    error = capsys.readouterr().err
    assert "error: efficientnet-vggish needs the VGGish checkpoint: pass --vggish" in error
    assert "Traceback" not in error and error.count("error:") == 1


def test_a_one_frame_video_gives_that_picture_to_every_step(set_dirs, clips):
    extractors = ExtractorGraphs(set_dirs("synthetic", "default"), threads=1)
    visual, audio = file_features(extractors, clips["one_frame"])
    assert len(visual) == 8  # 2 s of audio
    assert np.ptp(visual, axis=0).max() == 0 and np.ptp(audio, axis=0).max() > 0
    extractors.close()


def test_audio_shorter_than_one_window_is_padded_with_silence(set_dirs, clips):
    extractors = ExtractorGraphs(set_dirs("efficientnet-vggish", "default"), threads=1)
    spec = extractors.spec
    assert spec.samples_per_window == 15600 > 0.5 * spec.sample_rate
    with pytest.warns(UserWarning, match="frames of 160x120 are smaller than the extractors' 224"):
        assert assert_file_equals_stream(extractors, clips["half_second"]) == 2
    steps = list(file_steps(clips["half_second"], spec))
    padding = spec.samples_per_window - 2 * spec.samples_per_step
    assert (steps[1].audio[:padding] == 0).all() and np.abs(steps[1].audio[padding:]).max() > 0.1
    np.testing.assert_array_equal(steps[0].audio[-4000:], steps[1].audio[-8000:-4000])
    extractors.close()


def test_a_file_shorter_than_one_step_is_refused(set_dirs, tmp_path):
    short = make_clip(tmp_path / "short.mp4", duration=0.2, fps=16)
    extractors = ExtractorGraphs(set_dirs("synthetic", "unav100"), threads=1)
    with pytest.raises(MediaError, match="is shorter than one step"):
        file_features(extractors, short)
    extractors.close()


@pytest.mark.parametrize(
    ("config", "name", "timing"),
    [
        ("edge_efficientnet_logmel.yaml", "efficientnet-logmel", "default"),
        ("unav100_efficientnet_vggish.yaml", "efficientnet-vggish", "unav100"),
    ],
)
def test_the_configs_read_the_feature_files_their_set_writes(config, name, timing):
    loaded = load_config(ROOT / "configs" / config)
    visual, audio = SETS[name].feature_names()
    assert loaded.data.visual_files == [f"{{vid}}_{visual}.npy"]
    assert loaded.data.audio_files == [f"{{vid}}_{audio}.npy"]
    spec = SETS[name].spec(timing)
    assert loaded.data.step_seconds == spec.step_seconds
    assert loaded.data.step_offset == spec.step_seconds / 2  # the step's own interval
    assert (loaded.model.visual_dim, loaded.model.audio_dim) == SETS[name].dims


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frames of 160x120 are smaller")
def test_a_model_directory_built_on_a_set_computes_its_features_and_detects(
    set_dirs, clips, tmp_path
):
    """Train/serve consistency: ``python -m export`` of a LoCo with the set's extractors.pt gives
    graphs that compute exactly the features the set extracted; loco-detect runs on it."""
    set_dir = set_dirs("efficientnet-logmel", "default")
    config = Config(
        model=tiny_model_config(visual_dim=128, audio_dim=128),  # the set's dims
        data=DataConfig(step_seconds=0.25, step_offset=0.125),
    )
    torch.manual_seed(0)
    state = {
        "model": LoCo(config.model).state_dict(),
        "config": config.to_dict(),
        "class_names": ["a", "b", "c"],
    }
    save_checkpoint(tmp_path / "loco.pt", state)
    model_dir = tmp_path / "model"
    arguments = ["--checkpoint", str(tmp_path / "loco.pt"), "--out", str(model_dir)]
    assert export_main([*arguments, "--extractors", str(set_dir / "extractors.pt")]) == 0
    model = ModelDir(model_dir, threads=1)
    served = extract_file(clips["stereo48k"], model.spec, model.step_features)
    graphs = ExtractorGraphs(set_dir, threads=1)
    extracted = file_features(graphs, clips["stereo48k"])
    for got, expected in zip(served, extracted, strict=True):
        np.testing.assert_array_equal(got, expected)
    model.close()
    graphs.close()
    output = tmp_path / "results.json"
    detect = [str(clips["stereo48k"]), "--output", str(output), "--model", str(model_dir)]
    assert detect_main(detect) == 0
    assert list(json.loads(output.read_text())["results"]) == ["stereo48k"]
