"""Feature standardisation inside the model: measured on the train split, carried by the config
into the checkpoint, the exported graph and the card; torch, offline and the stream agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from loco_stream.config import ConfigError, load_config
from loco_stream.features.media import extract_file
from loco_stream.model import WindowGraph
from loco_stream.model.checkpoint import load_model
from loco_stream.model_dir import ModelDir
from loco_stream.sources.file import FileSource
from loco_stream.stream.engine import StreamEngine
from loco_stream.synth import write_clip
from tests.planted import make_planted_dataset, planted_config_overrides
from tests.test_stream_support import demo_scenario
from tests.tiny_model import make_tiny_model_dir
from train.data import load_features, load_records
from train.standardise import measure_feature_stats

ROOT = Path(__file__).resolve().parents[1]


def skewed_stats(dim: int, seed: int) -> dict:
    """Means far from 0 and scales far from 1, as EfficientNet's and the log-mel CNN's differ."""
    rng = np.random.default_rng(seed)
    return {
        "mean": [float(v) for v in rng.uniform(-3, 3, dim)],
        "scale": [float(v) for v in rng.uniform(0.05, 4, dim)],
    }


@pytest.fixture(scope="module")
def standardised_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stats = {"visual": skewed_stats(8, 1), "audio": skewed_stats(8, 2)}
    return make_tiny_model_dir(tmp_path_factory.mktemp("standardised"), feature_stats=stats)


def test_torch_offline_and_stream_see_the_same_standardised_numbers(
    standardised_dir: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(demo_scenario(3, 12.0), clip)
    network, config, _ = load_model(standardised_dir / "loco.pt")
    card = json.loads((standardised_dir / "model_card.json").read_text())
    assert card["window"]["model"]["feature_stats"] == config.model.feature_stats
    with ModelDir(standardised_dir) as model:
        visual, audio = extract_file(clip, model.spec, model.step_features)  # offline, (48, 8)
        window = model.info.window
        inputs = (visual[None, -window:], audio[None, -window:], np.ones((1, window), np.float32))
        onnx_scores, onnx_segments = model.run_window(*inputs)
        with torch.no_grad():
            torch_scores, torch_segments = WindowGraph(network)(
                *(torch.from_numpy(x) for x in inputs)
            )
        np.testing.assert_allclose(onnx_scores, torch_scores.numpy(), atol=1e-4)
        np.testing.assert_allclose(onnx_segments, torch_segments.numpy(), atol=1e-3)
        engine = StreamEngine(model)
        with FileSource(clip) as source:
            engine.run(source, lambda event: None)
        stream_scores, _ = model.run_window(*engine.ring.window_inputs())
        np.testing.assert_allclose(stream_scores, onnx_scores, atol=1e-6)
    # the statistics act: the same weights on unstandardised inputs give other scores
    network.visual_standardiser = network.audio_standardiser = None
    with torch.no_grad():
        raw_scores, _ = WindowGraph(network)(*(torch.from_numpy(x) for x in inputs))
    assert np.abs(raw_scores.numpy() - onnx_scores).max() > 1e-3


def test_a_model_directory_written_before_standardisation_still_opens(tiny_model_dir: Path):
    card = json.loads((tiny_model_dir / "model_card.json").read_text())
    card["window"]["model"].pop("feature_stats", None)  # as cards were written before
    folder = tiny_model_dir.parent / "old_card"
    folder.mkdir(exist_ok=True)
    for path in tiny_model_dir.iterdir():
        target = folder / path.name
        if not target.exists():
            target.symlink_to(path)
    (folder / "model_card.json").unlink()
    (folder / "model_card.json").write_text(json.dumps(card))
    with ModelDir(folder) as model:
        assert model.info.model.feature_stats == {}


def test_measured_statistics_are_the_train_split_per_dimension_mean_and_std(tmp_path: Path):
    annotations = make_planted_dataset(tmp_path, {"train": 6, "validation": 2})
    config = load_config(
        ROOT / "configs" / "smoke.yaml", planted_config_overrides(tmp_path, annotations)
    )
    records, _ = load_records(annotations, "train", config.model.num_classes)
    stats = measure_feature_stats(records, config.data, config.model, progress=False)
    visual = np.concatenate(
        [
            load_features(config.data.feature_dir, r.video_id, config.data, config.model)[0]
            for r in records
        ]
    )
    np.testing.assert_allclose(stats["visual"]["mean"], visual.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["visual"]["scale"], visual.std(0), rtol=1e-4)


def test_statistics_of_the_wrong_size_are_refused_with_the_dimension_named() -> None:
    with pytest.raises(ConfigError, match=r"feature_stats.visual.mean must list 8 numbers"):
        load_config(
            None,
            [
                "model.visual_dim=8",
                "model.audio_dim=8",
                'model.feature_stats={"visual": {"mean": [0, 0], "scale": [1, 1]}}',
            ],
        )


def test_feature_dropout_acts_while_training_only() -> None:
    from loco_stream.model import LoCo
    from tests.tiny_model import tiny_model_config

    torch.manual_seed(0)
    model = LoCo(tiny_model_config(feature_dropout=0.5))
    visual, audio, mask = torch.randn(1, 32, 8), torch.randn(1, 32, 8), torch.ones(1, 32)
    first, second = (model(visual, audio, mask).cls_logits for _ in range(2))
    assert not torch.allclose(first, second)  # a new dropout mask each call
    model.eval()
    first, second = (model(visual, audio, mask).cls_logits for _ in range(2))
    assert torch.equal(first, second)
