"""The shipped extractor sets: which networks make a step's features, and the step they cut.

    python -m train.extractor_sets NAME --out DIR [--timing unav100] [--vggish CKPT]
        [--vggish-pca PCA] [--frames N] [--frame-size PIXELS]

writes the set's ``extractors.pt`` (its networks, fp16 weights) and the two extractor graphs
exported from it (``audio_extractor.onnx``, ``visual_extractor.onnx``, each checked against
torch) into DIR, for ``python -m train.extract_features`` to run. A LoCo trained on the features
becomes a model directory with ``python -m export --checkpoint BEST.pt --extractors
DIR/extractors.pt``: its graphs then compute exactly the features it was trained on.

=====================  ==============================================  ===========================
NAME                   visual                                          audio
=====================  ==============================================  ===========================
synthetic              the shipped CNN: 4 frames of 96x96 and their    the shipped log-mel CNN
                       differences (trained on the synthetic shapes)   (128-d)
efficientnet-logmel    EfficientNet-Lite0 to stage 5, ImageNet         the shipped log-mel CNN
                       weights, frozen, and a small head trained on    over the last 0.96 s
                       the user's labelled clips (128-d): 1 frame of
                       224x224 a step (``--frames``, ``--frame-size``)
efficientnet-vggish    the same                                        VGGish (128-d) over the
                                                                       last 0.975 s (one example);
                                                                       needs ``--vggish``
=====================  ==============================================  ===========================

The EfficientNet sets' visual head learns from labelled clips: ``loco-train --extractors NAME``
trains it in its extractor stage (``train/map_head.py``). Written here, without labels, the head
keeps its random initial weights: such graphs serve timing and tests, not training (a warning
says so).

Timings (``--timing``): ``default`` steps of 0.25 s, each set's own windows (the synthetic CNNs
see their own step, EfficientNet the frame at the step's middle); ``unav100`` UnAV-100's
original timing: steps of 0.32 s, both windows 0.96 s (VGGish: 0.975 s, its example). Windows end
at the step's end (``loco_stream/features/steps.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from export.extractors import export_extractors
from loco_stream.bundle import DEFAULT_MODEL_DIR, EXTRACTOR_CHECKPOINT
from loco_stream.features.checkpoints import CheckpointError
from loco_stream.features.efficientnet_lite import IMAGENET_SIZE, pretrained_efficientnet_lite0
from loco_stream.features.map_head import HEAD_DIM, VisualMapHead, untrained_visual_map_head
from loco_stream.features.steps import StepSpec
from loco_stream.features.vggish import (
    EXAMPLE_SECONDS,
    AudioVGGish,
    load_pca,
    pretrained_vggish,
)

from .checkpoint import load_extractors, save_extractors
from .map_head import HeadTraining, train_visual_head


@dataclass(frozen=True)
class Timing:
    """The hop of a step, and the window every extractor sees (None: each set's own)."""

    step_seconds: float
    window_seconds: float | None


TIMINGS = {"default": Timing(0.25, None), "unav100": Timing(0.32, 0.96)}


@dataclass(frozen=True)
class PretrainedFiles:
    """Checkpoints a user downloads once (only VGGish needs one)."""

    vggish: Path | None = None
    vggish_pca: Path | None = None
    official: bool = True  # check the files are the released ones (SHA-256 prefix)


Networks = dict[str, tuple[nn.Module, dict]]  # modality -> (encoder, its constructor options)


@dataclass(frozen=True)
class ExtractorSet:
    """A visual and an audio network, the windows they see, and their feature file names."""

    name: str
    visual_name: str  # feature files are <video>_<visual_name>.npy and <video>_<audio_name>.npy
    audio_name: str
    dims: tuple[int, int]  # visual, audio feature sizes
    frames_per_step: int
    frame_size: int
    visual_window: float | None  # under the default timing (None: the step)
    audio_window: float | None
    fixed_audio_window: bool  # the audio network needs exactly this window (VGGish's example)
    build: Callable[[PretrainedFiles], Networks]

    def spec(
        self, timing: str = "default", frames: int | None = None, frame_size: int | None = None
    ) -> StepSpec:
        hop = TIMINGS[timing]
        window = hop.window_seconds
        return StepSpec(
            step_seconds=hop.step_seconds,
            frames_per_step=frames or self.frames_per_step,
            frame_size=frame_size or self.frame_size,
            audio_window_seconds=self.audio_window
            if window is None or self.fixed_audio_window
            else window,
            visual_window_seconds=self.visual_window if window is None else window,
        )

    def feature_names(self) -> tuple[str, str]:
        return self.visual_name, self.audio_name


SHIPPED_OPTIONS = {"dim": 128, "width": 32}  # the default model's CNNs


def shipped_log_mel_cnn() -> tuple[nn.Module, dict]:
    """The default model's trained log-mel CNN and its options."""
    encoders, _ = load_extractors(DEFAULT_MODEL_DIR / EXTRACTOR_CHECKPOINT)
    return encoders["audio"], SHIPPED_OPTIONS


def efficientnet() -> tuple[nn.Module, dict]:
    """EfficientNet-Lite0's frozen stage 5 and a head to train (seeded: the same every time)."""
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(0)
        return untrained_visual_map_head(pretrained_efficientnet_lite0()), {"dim": HEAD_DIM}


def build_synthetic(files: PretrainedFiles) -> Networks:
    encoders, _ = load_extractors(DEFAULT_MODEL_DIR / EXTRACTOR_CHECKPOINT)
    return {"visual": (encoders["visual"], SHIPPED_OPTIONS), "audio": shipped_log_mel_cnn()}


def build_efficientnet_logmel(files: PretrainedFiles) -> Networks:
    return {"visual": efficientnet(), "audio": shipped_log_mel_cnn()}


def build_efficientnet_vggish(files: PretrainedFiles) -> Networks:
    if files.vggish is None:
        raise CheckpointError(
            "efficientnet-vggish needs the VGGish checkpoint: pass --vggish vggish-10086976.pth "
            "(README, section Feature extractors, says where to download it)"
        )
    vggish = pretrained_vggish(files.vggish, files.official)
    pca = load_pca(files.vggish_pca, files.official) if files.vggish_pca else None
    audio = AudioVGGish(vggish, pca), {"pca": pca is not None}
    return {"visual": efficientnet(), "audio": audio}


SETS = {
    s.name: s
    for s in (
        ExtractorSet(
            "synthetic", "visual", "audio", (128, 128), 4, 96, None, None, False, build_synthetic
        ),
        ExtractorSet(
            "efficientnet-logmel", "efficientnet", "logmel", (HEAD_DIM, 128), 1, IMAGENET_SIZE,
            None, 0.96, False, build_efficientnet_logmel,
        ),
        ExtractorSet(
            "efficientnet-vggish", "efficientnet", "vggish", (HEAD_DIM, 128), 1, IMAGENET_SIZE,
            None, EXAMPLE_SECONDS, True, build_efficientnet_vggish,
        ),
    )
}  # fmt: skip


def write_extractor_set(
    name: str,
    out_dir: Path,
    timing: str = "default",
    files: PretrainedFiles | None = None,
    frames: int | None = None,
    frame_size: int | None = None,
    head_training: HeadTraining | None = None,
) -> dict:
    """Write set ``name`` into ``out_dir``: its ``extractors.pt`` (fp16 weights, what a model
    directory ships) and the two graphs exported from it, so that features extracted with the set
    equal a model directory's built on it. A visual head is trained first on ``head_training``'s
    clips (without them it keeps its initial weights, with a warning). Returns a report: each
    graph's max abs error against torch, and the head's held-out accuracy; raises
    ``CheckpointError`` for a missing or bad pretrained file."""
    extractor_set = SETS[name]
    spec = extractor_set.spec(timing, frames, frame_size)
    networks = extractor_set.build(files or PretrainedFiles())
    report: dict = {}
    visual = networks["visual"][0]
    if isinstance(visual, VisualMapHead):
        if head_training is None:
            print(
                f"warning: {name}'s visual head is untrained (loco-train --extractors {name} "
                "trains it on labelled clips): these graphs serve timing and tests, not training",
                file=sys.stderr,
            )
        else:
            report.update(train_visual_head(visual, spec, head_training))
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / EXTRACTOR_CHECKPOINT
    encoders = {modality: network for modality, (network, _) in networks.items()}
    options = {modality: option for modality, (_, option) in networks.items()}
    save_extractors(checkpoint, spec, encoders, options)
    shipped, _ = load_extractors(checkpoint)
    visual_dim, audio_dim = extractor_set.dims
    report["onnx_max_abs_error"] = export_extractors(
        shipped["audio"],
        shipped["visual"],
        spec,
        out_dir,
        audio_dim=audio_dim,
        visual_dim=visual_dim,
    )
    return report


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a set's timing, frames and pretrained files."""
    parser.add_argument("--timing", choices=sorted(TIMINGS), default="default")
    parser.add_argument("--frames", type=int, help="frames a step (default: the set's)")
    parser.add_argument("--frame-size", type=int, help="pixels of the square frames")
    parser.add_argument("--vggish", type=Path, help="VGGish checkpoint (vggish-10086976.pth)")
    parser.add_argument("--vggish-pca", type=Path, help="its PCA file (vggish_pca_params-*.pth)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.extractor_sets", description=__doc__)
    parser.add_argument("name", choices=sorted(SETS))
    parser.add_argument("--out", type=Path, required=True, help="folder for the two graphs")
    add_set_arguments(parser)
    args = parser.parse_args(argv)
    files = PretrainedFiles(args.vggish, args.vggish_pca)
    try:
        report = write_extractor_set(
            args.name, args.out, args.timing, files, args.frames, args.frame_size
        )
    except CheckpointError as error:
        print(f"extractor_sets: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"set": args.name, "out": str(args.out), **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
