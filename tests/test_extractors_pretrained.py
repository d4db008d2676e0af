"""The pretrained extractors: EfficientNet-Lite0 classifies real photographs (its weights and
preprocessing are right), VGGish equals the ``torchvggish`` package, bad checkpoint files fail
with one clear line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from loco_stream.features.checkpoints import CheckpointError
from loco_stream.features.efficientnet_lite import (
    IMAGENET_SIZE,
    EfficientNetLite0,
    VisualBackbone,
    normalise,
    packaged_weights,
    pretrained_efficientnet_lite0,
)
from loco_stream.features.vggish import (
    EXAMPLE_SAMPLES,
    AudioVGGish,
    VGGish,
    load_pca,
    pretrained_vggish,
)

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a dev dependency")

# scikit-image's bundled photographs -> the ImageNet classes (index: name) one of which must be
# in the top 5 (their indices in the standard ILSVRC-2012 class order)
PHOTOS = {
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "coffee": {967: "espresso", 968: "cup", 504: "coffee mug"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
    "camera": {872: "tripod", 759: "reflex camera"},  # the cameraman and his tripod
    "motorcycle": {665: "moped", 670: "motor scooter"},
    "clock": {409: "analog clock", 892: "wall clock"},
}


def photo(name: str) -> np.ndarray:
    """(224, 224, 3) uint8: the photograph's centre square, resized (ImageNet evaluation)."""
    image = (
        skimage_data.stereo_motorcycle()[0]
        if name == "motorcycle"
        else getattr(skimage_data, name)()
    )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side, :3])
    return cv2.resize(square, (IMAGENET_SIZE, IMAGENET_SIZE), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    torch.set_num_threads(2)
    return pretrained_efficientnet_lite0()


@torch.no_grad()
def test_efficientnet_lite0_classifies_real_photographs(lite0):
    images = torch.from_numpy(np.stack([photo(name) for name in PHOTOS]))
    top5 = lite0(normalise(images)).topk(5).indices.tolist()
    for (name, classes), found in zip(PHOTOS.items(), top5, strict=True):
        assert set(found) & set(classes), f"{name}: top-5 {found}, expected one of {classes}"
    # the Lite preprocessing ((x - 127) / 128) is the one the weights were trained with: torch's
    # usual ImageNet mean/std normalisation is less sure of the photographs' classes
    lite_confidence = lite0(normalise(images)).softmax(-1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    other = lite0((images.permute(0, 3, 1, 2).float() / 255 - mean) / std).softmax(-1)
    mass = [sorted(classes) for classes in PHOTOS.values()]
    lite_mass = sum(float(lite_confidence[i, m].sum()) for i, m in enumerate(mass))
    other_mass = sum(float(other[i, m].sum()) for i, m in enumerate(mass))
    assert lite_mass > other_mass


@torch.no_grad()
def test_the_step_embedding_is_the_mean_of_its_frames_embeddings(lite0):
    frames = torch.from_numpy(np.stack([photo("chelsea"), photo("coffee")]))[None]  # (1,2,H,W,3)
    step = VisualBackbone(lite0)(frames)
    each = lite0.embed(normalise(frames[0]))
    assert step.shape == (1, 1280)
    torch.testing.assert_close(step[0], each.mean(0), atol=1e-5, rtol=1e-5)
    assert (each[0] - each[1]).abs().max() > 0.1  # the two photographs differ


@pytest.fixture(scope="module")
def vggish_pair() -> tuple[nn.Module, VGGish]:
    """torchvggish's network with random weights scaled for O(1) outputs, and ours with them."""
    torchvggish = pytest.importorskip("torchvggish.torchvggish", reason="a dev dependency")
    torch.manual_seed(0)
    reference = torchvggish._vgg(postprocess=False).eval()
    for module in reference.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight)
            nn.init.normal_(module.bias, std=0.1)
    ours = VGGish()
    ours.load_state_dict(reference.state_dict())  # the package's key layout, as it is
    return reference, ours.eval()


def speech_like(samples: int, seed: int = 0) -> np.ndarray:
    """A 16-kHz waveform with harmonics, a glide and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    wave = sum(0.3 / k * np.sin(k * phase) for k in range(1, 8))
    return (wave + 0.02 * rng.standard_normal(samples)).astype(np.float32)


@torch.no_grad()
def test_vggish_equals_the_torchvggish_package_from_the_same_waveform(vggish_pair):
    vggish_input = pytest.importorskip("torchvggish.vggish_input", reason="a dev dependency")
    reference, ours = vggish_pair
    hop = 15360  # 0.96 s: the package cuts consecutive examples without overlap
    wave = speech_like(3 * hop + EXAMPLE_SAMPLES - hop)
    expected = reference(vggish_input.waveform_to_examples(wave.astype(np.float64), 16000))
    windows = np.stack([wave[k * hop : k * hop + EXAMPLE_SAMPLES] for k in range(3)])
    got = AudioVGGish(ours)(torch.from_numpy(windows))
    assert expected.shape == got.shape == (3, 128)
    assert expected.abs().max() > 1.0  # outputs of a size where 1e-4 means something
    assert (got - expected).abs().max() < 1e-4


@torch.no_grad()
def test_pca_postprocessing_equals_the_package(tmp_path):
    torchvggish = pytest.importorskip("torchvggish.torchvggish", reason="a dev dependency")
    rng = np.random.default_rng(1)
    vectors = np.linalg.qr(rng.standard_normal((128, 128)))[0]
    means = rng.standard_normal((128, 1))
    path = tmp_path / "pca.pth"
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means}, path)  # numpy, as released
    ours = load_pca(path, official=False)
    reference = torchvggish.Postprocessor.__new__(torchvggish.Postprocessor)
    reference._pca_matrix = torch.as_tensor(vectors).float()
    reference._pca_means = torch.as_tensor(means).float()
    embeddings = torch.from_numpy(rng.uniform(0, 3, (4, 128)).astype(np.float32))
    expected = reference.postprocess(embeddings)
    got = ours(embeddings)
    assert got.min() >= 0 and got.max() <= 255
    assert (got - expected).abs().max() <= 1.0  # equal but where fp32 rounding flips a .5
    assert (got == expected).float().mean() > 0.99


def test_bad_checkpoints_fail_with_one_line(tmp_path):
    efficientnet = packaged_weights()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(efficientnet.read_bytes()[: efficientnet.stat().st_size // 3])
    cases = [
        (pretrained_vggish, tmp_path / "missing.pth", "does not exist; download the official"),
        (pretrained_efficientnet_lite0, truncated, "is not a readable EfficientNet-Lite0 "),
        (pretrained_vggish, efficientnet, "does not hold VGGish weights (18 missing key(s)"),
        (load_pca, truncated, "is not a readable PCA parameter file"),
    ]
    for load, path, message in cases:
        with pytest.raises(CheckpointError) as error:
            load(path, official=False) if load is not pretrained_efficientnet_lite0 else load(path)
        assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    # the released file is checked by its SHA-256 (torch hub's file name carries its start)
    with pytest.raises(CheckpointError, match="is not the official VGGish checkpoint file"):
        pretrained_vggish(efficientnet)
