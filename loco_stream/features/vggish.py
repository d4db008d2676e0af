"""VGGish (Hershey et al. 2017, AudioSet): the pretrained audio network, in torch.

Written here in the key layout of the official PyTorch port (``harritaylor/torchvggish``:
``features.N`` convolutions, ``embeddings.N`` linear layers), whose checkpoint a user downloads
once (`CHECKPOINT_URL`). One example is 96 log-mel frames of 10 ms (0.96 s), which the front end
(`log_mel.VGGishLogMel`) makes from `EXAMPLE_SAMPLES` = 0.975 s of 16-kHz audio (95 hops plus
one 25-ms window). Output: a 128-d embedding per example, optionally PCA-whitened, clipped to
[-2, 2] and quantised to 0..255 (AudioSet's released features) when the PCA parameter file is
given.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import CheckpointError, load_state_dict
from .log_mel import HOP, WINDOW, VGGishLogMel

EXAMPLE_FRAMES = 96
EXAMPLE_SAMPLES = WINDOW + (EXAMPLE_FRAMES - 1) * HOP  # 15600: 0.975 s at 16 kHz
EXAMPLE_SECONDS = EXAMPLE_SAMPLES / 16000
EMBED_DIM = 128
CHECKPOINT_URL = (
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
)
PCA_URL = (
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
    "vggish_pca_params-970ea276.pth"
)
CHECKPOINT_SHA256_PREFIX = "10086976"  # torch hub names release files by their SHA-256's start
PCA_SHA256_PREFIX = "970ea276"
DOWNLOAD_HINT = f"download the official checkpoint once from {CHECKPOINT_URL}"
QUANTIZE_RANGE = (-2.0, 2.0)
CONV_CHANNELS = [64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool"]


class VGGish(nn.Module):
    """(B, 1, 96, 64) log-mel examples -> (B, 128) embeddings."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width in CONV_CHANNELS:
            if width == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, EMBED_DIM),
            nn.ReLU(),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples)  # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, 6*4*512), channels last as in TensorFlow
        return self.embeddings(x)


class PCAQuantize(nn.Module):
    """AudioSet's post-processing: (B, 128) -> PCA-whitened, clipped, quantised to 0..255."""

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("eigen_vectors", eigen_vectors.float())  # (128, 128)
        self.register_buffer("means", means.float().reshape(1, -1))  # (1, 128)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        low, high = QUANTIZE_RANGE
        whitened = (embeddings - self.means) @ self.eigen_vectors.T
        return torch.round((whitened.clamp(low, high) - low) * (255.0 / (high - low)))


class AudioVGGish(nn.Module):
    """The per-step extractor: (B, 15600) 16-kHz waveform -> (B, 128), one example per step."""

    def __init__(self, network: VGGish, postprocess: PCAQuantize | None = None) -> None:
        super().__init__()
        self.log_mel = VGGishLogMel()
        self.network = network
        self.postprocess = postprocess

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        examples = self.log_mel(waveform)[:, None]  # (B, 1, 96, 64)
        embeddings = self.network(examples)
        return self.postprocess(embeddings) if self.postprocess is not None else embeddings


def empty_audio_vggish(pca: bool) -> AudioVGGish:
    """An `AudioVGGish` (with the PCA layer or not) whose weights a state dict will fill."""
    postprocess = PCAQuantize(torch.zeros(EMBED_DIM, EMBED_DIM), torch.zeros(EMBED_DIM))
    return AudioVGGish(VGGish(), postprocess if pca else None)


def sha256_prefix(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[: len(CHECKPOINT_SHA256_PREFIX)]


def check_official(path: Path, prefix: str, what: str, hint: str) -> None:
    """The file's SHA-256 must begin with ``prefix`` (torch hub's naming of the release files)."""
    if not path.is_file():
        raise CheckpointError(f"{what} file {path} does not exist; {hint}")
    found = sha256_prefix(path)
    if found != prefix:
        raise CheckpointError(
            f"{path} is not the official {what} file (its SHA-256 begins {found}, the release's "
            f"begins {prefix}: truncated, damaged or another file); {hint}"
        )


def pretrained_vggish(path: str | Path, official: bool = True) -> VGGish:
    """VGGish with the weights of ``path`` (checked to be the official release unless
    ``official`` is False, e.g. for fine-tuned weights in the same layout), frozen."""
    path = Path(path)
    if official:
        check_official(path, CHECKPOINT_SHA256_PREFIX, "VGGish checkpoint", DOWNLOAD_HINT)
    network = VGGish()
    load_state_dict(path, network, "VGGish", DOWNLOAD_HINT)
    return network.eval().requires_grad_(False)


def load_pca(path: str | Path, official: bool = True) -> PCAQuantize:
    """The PCA parameters (``pca_eigen_vectors`` (128, 128), ``pca_means`` (128,)) of ``path``."""
    path, hint = Path(path), f"download the official file once from {PCA_URL}"
    if official:
        check_official(path, PCA_SHA256_PREFIX, "VGGish PCA parameter", hint)
    safe = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("float64"))]
    try:
        with torch.serialization.safe_globals(safe):  # the release stores numpy arrays
            params = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable PCA parameter file ({reason}); {hint}"
        ) from None
    try:
        vectors = torch.as_tensor(np.asarray(params["pca_eigen_vectors"]))
        means = torch.as_tensor(np.asarray(params["pca_means"])).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} lacks pca_eigen_vectors / pca_means; {hint}") from None
    if vectors.shape != (EMBED_DIM, EMBED_DIM) or means.shape != (EMBED_DIM,):
        raise CheckpointError(
            f"{path} has PCA parameters of shapes {tuple(vectors.shape)} and "
            f"{tuple(means.shape)}, not (128, 128) and (128,); {hint}"
        )
    return PCAQuantize(vectors, means)
