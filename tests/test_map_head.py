"""The pretrained sets' visual extractor: EfficientNet-Lite0's frozen stage 5 and a head that
``loco-train`` trains. On clips of real photographs (scikit-image's) moving over real textures,
the trained head tells held-out steps' objects apart; what ships is the trunk, not the whole
network; the trained set's graph computes the trained head's numbers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from loco_stream.features.efficientnet_lite import normalise, pretrained_efficientnet_lite0
from loco_stream.features.map_head import STAGE5_BLOCKS, untrained_visual_map_head
from loco_stream.runtime.extractor_graphs import ExtractorGraphs
from tests.media import make_clip
from train import map_head
from train.checkpoint import load_checkpoint, load_extractors
from train.extractor_sets import SETS, write_extractor_set
from train.extractors import LabelledClip, step_presence
from train.map_head import HeadTraining

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a dev dependency")

OBJECTS = ("chelsea", "coffee", "rocket", "astronaut")  # class k: scikit-image's photograph k
TEXTURES = ("brick", "grass", "gravel")  # grey photographs the objects move over
SIZE, FPS, SECONDS = 224, 8, 8.0
FRAME_SIZE = 160  # the extractors' input: cheaper than 224, the same network


def rgb(name: str) -> np.ndarray:
    image = getattr(skimage_data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def write_photo_clip(path: Path, seed: int) -> LabelledClip:
    """An 8-s clip: two objects in turn, each 3-4 s, drifting over a texture at their own size."""
    rng = np.random.default_rng(seed)
    texture = rgb(TEXTURES[seed % len(TEXTURES)])
    classes = rng.choice(len(OBJECTS), 2, replace=False)
    events = []
    start = float(rng.uniform(0.5, 2.0))
    for label in classes:
        length = float(rng.uniform(3.0, 4.0))
        side = int(rng.integers(90, 150))
        picture = cv2.resize(rgb(OBJECTS[label]), (side, side), interpolation=cv2.INTER_AREA)
        place = rng.integers(0, SIZE - side, 2)
        events.append((start, start + length, int(label), picture, place, rng.integers(-3, 4, 2)))
        start += length + float(rng.uniform(0.5, 1.5))
    corner = rng.integers(0, texture.shape[0] - SIZE, 2)

    def paint(index: int, size: tuple[int, int]) -> np.ndarray:
        t = index / FPS
        image = texture[corner[0] : corner[0] + SIZE, corner[1] : corner[1] + SIZE].copy()
        for begin, end, _, picture, place, drift in events:
            if begin <= t < end:
                y, x = np.clip(place + drift * index, 0, SIZE - len(picture))
                image[y : y + len(picture), x : x + len(picture)] = picture
        return image

    make_clip(path, duration=SECONDS, fps=FPS, size=(SIZE, SIZE), paint=paint, audio_rate=16000)
    visible = [{"segment": [b, e], "label_id": k} for b, e, k, *_ in events]
    return LabelledClip(path, visible, visible)


@pytest.fixture(scope="module")
def photo_clips(tmp_path_factory) -> dict[str, list[LabelledClip]]:
    folder = tmp_path_factory.mktemp("photo_clips")
    clips = [write_photo_clip(folder / f"clip{i}.mp4", seed=i) for i in range(8)]
    return {"train": clips[:6], "held_out": clips[6:]}


def test_the_trunk_is_efficientnets_own_stage_5_on_a_photograph() -> None:
    network = pretrained_efficientnet_lite0()
    visual = untrained_visual_map_head(network)
    frame = torch.from_numpy(cv2.resize(rgb("chelsea"), (SIZE, SIZE)))[None, None]  # (1,1,H,W,3)
    maps = visual.maps(frame)
    expected = torch.nn.functional.relu6(network._bn0(network._conv_stem(normalise(frame[0]))))
    for block in network._blocks[:STAGE5_BLOCKS]:
        expected = block(expected)
    assert maps.shape == (1, 1, 112, 14, 14)
    torch.testing.assert_close(maps[0], expected)
    visual.train()
    assert not visual.trunk.training  # frozen: ImageNet's BatchNorm statistics stay


def test_loco_train_stage_trains_a_head_that_tells_real_objects_apart(
    tmp_path: Path, photo_clips, capsys
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    training = HeadTraining(
        [*photo_clips["train"], LabelledClip(broken, [], [])],
        photo_clips["held_out"],
        num_classes=len(OBJECTS),
        cache=tmp_path / "maps",
        min_updates=40,
    )
    report = write_extractor_set(
        "efficientnet-logmel", tmp_path / "set", frame_size=FRAME_SIZE, head_training=training
    )

    assert "skipped broken.mp4" in capsys.readouterr().err
    assert not training.cache.exists()  # gigabytes on a real set: removed once the head is trained
    steps = int(SECONDS / 0.25)
    absent = np.mean(
        [1 - step_presence(c.visible, steps, 0.25, len(OBJECTS)) for c in photo_clips["held_out"]]
    )
    assert absent < 0.9  # "nothing shown" alone would score this
    assert report["visual_presence_accuracy"] > 0.95
    assert report["visual_head_steps"] == 6 * steps

    # what ships is the frozen trunk and the trained head, not EfficientNet's later stages
    visual_weights = load_checkpoint(tmp_path / "set" / "extractors.pt")["visual"]
    assert not any(k.startswith(f"trunk._blocks.{STAGE5_BLOCKS}.") for k in visual_weights)
    assert (tmp_path / "set" / "extractors.pt").stat().st_size < 4e6

    # the graph the stream runs computes the trained head's numbers
    encoders, spec = load_extractors(tmp_path / "set" / "extractors.pt")
    frames = np.stack([cv2.resize(rgb(name), (FRAME_SIZE,) * 2) for name in OBJECTS])[:, None]
    with torch.no_grad():
        expected = encoders["visual"](torch.from_numpy(frames)).numpy()
    graphs = ExtractorGraphs(tmp_path / "set", threads=1)
    try:
        got = np.stack(
            [graphs.visual_graph.run({"frames": frame[None]})["features"][0] for frame in frames]
        )
    finally:
        graphs.close()
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert np.abs(expected[0] - expected[1]).max() > 0.1  # different objects, different features


def test_long_clips_give_an_even_share_of_their_steps(photo_clips, tmp_path, monkeypatch):
    """Where the clips hold more steps than the head learns from, each gives evenly spread steps,
    and their labels are those steps' own."""
    monkeypatch.setattr(map_head, "MAX_HEAD_STEPS", 8)
    clips = photo_clips["train"][:2]
    training = HeadTraining(clips, [], num_classes=len(OBJECTS), cache=tmp_path)
    spec = SETS["efficientnet-logmel"].spec(frame_size=64)
    visual = untrained_visual_map_head()
    maps, shown = map_head.labelled_maps(visual, clips, spec, training, "train")
    steps = int(SECONDS / spec.step_seconds)
    chosen = [0, 10, 21, 31]  # 4 a clip, from the first step to the last
    assert maps.shape[:2] == (8, 1) and shown.shape == (8, len(OBJECTS))
    for index, clip in enumerate(clips):
        every = step_presence(clip.visible, steps, spec.step_seconds, len(OBJECTS))
        np.testing.assert_array_equal(shown[4 * index : 4 * index + 4], every[chosen])
