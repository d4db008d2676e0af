"""From labelled videos to a live detector, in one command: ``loco-train``.

    loco-train --videos DIR --annotations A.json --out MODEL_DIR [--extractors NAME]
        [--background DIR] [--epochs N] [--workdir DIR] [--config FILE] [--check-only]
        [--skip-missing-videos] [section.key=value ...]

Six stages; each keeps its output in the work folder, so a rerun resumes where the last stopped:

1. check       the videos against the annotation file (UnAV-100 layout), each video's streams
               and length, the classes and the splits; writes the work folder's
               ``annotations.json``: label ids, probed durations, a validation share held out of
               ``train`` when the file has no ``validation`` subset, and the ``--background``
               clips as event-free training and validation clips.
2. extractors  ``trainable`` (the default): the project's audio and visual CNNs, each learning
               from its own modality which classes are present in a step (the annotated events;
               background clips are negatives), or a shipped set (train/extractor_sets.py), whose
               EfficientNet visual side learns only a small head on its frozen stage 5 here
               (train/map_head.py; ``efficientnet-logmel`` is the set recommended for real videos).
3. features    every clip through the exported extractor graphs, the ones the stream runs,
               then the feature check (``train/feature_check.py``): dead and constant
               dimensions, NaN/inf and a linear probe per modality, with a plain warning when
               a modality does not separate the classes (``--check-only`` stops here).
4. train       LoCo (``configs/edge.yaml`` sized to the classes and features), standardising
               the features with the train split's statistics, for a number of steps sized to
               the data (``train/schedule.py``), keeping the best checkpoint on the validation
               split and stopping early when it stops improving (``loco/curve.png``).
5. score       the ``test`` subset with the reference evaluator (skipped when there is none).
6. export      the model directory, every graph checked against torch (``python -m export``'s
               code), opened again by the runtime; its card holds the scores, the settings and
               each stage's time (``model_card.json`` and ``MODEL_CARD.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loco_stream.limits import LimitError
from loco_stream.limits import check as check_limit

from .run_settings import DEFAULT_CONFIG, TRAINABLE, Settings

# flag -> its limit (loco_stream.limits)
LIMITED_FLAGS = {
    "epochs": "epochs",
    "extractor_clips": "clips",
    "extractor_epochs": "epochs",
    "workers": "workers",
}
# train/extractor_sets.py's SETS, named here without importing torch (tests/test_cli_help.py)
SHIPPED_EXTRACTOR_SETS = ("efficientnet-logmel", "efficientnet-vggish", "synthetic")
SET_TIMINGS = ("default", "unav100")  # and its TIMINGS


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="loco-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=Path, required=True, help="folder of labelled videos")
    parser.add_argument("--annotations", type=Path, required=True, help="UnAV-100-style JSON")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument(
        "--extractors",
        default=TRAINABLE,
        help=f"the feature extractors: {TRAINABLE} (the project's CNNs, trained here) or a "
        f"shipped set: {', '.join(SHIPPED_EXTRACTOR_SETS)} (default: {TRAINABLE})",
    )
    parser.add_argument(
        "--timing",
        choices=SET_TIMINGS,
        default="default",
        help="a shipped set's steps: default (0.25 s) or unav100 (UnAV-100's 0.32 s, windows of "
        "0.96 s) (default: default)",
    )
    parser.add_argument(
        "--vggish", type=Path, help="VGGish checkpoint, for efficientnet-vggish (default: none)"
    )
    parser.add_argument(
        "--vggish-pca", type=Path, help="its PCA file (default: none, the raw 128-d embedding)"
    )
    parser.add_argument(
        "--background",
        type=Path,
        help="folder of event-free videos, trained on as negatives (default: none)",
    )
    parser.add_argument("--epochs", type=int, help="LoCo epochs (default: sized to the data)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: MODEL_DIR.work)")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="LoCo config YAML (default: the project's configs/edge.yaml)",
    )
    parser.add_argument(
        "--validation-share",
        type=float,
        default=0.15,
        help="share of train held out for validation when the annotations have no validation "
        "subset (default: 0.15)",
    )
    parser.add_argument(
        "--extractor-clips",
        type=int,
        default=200,
        help="labelled clips the trainable extractors (or a pretrained set's visual head) learn "
        "from (default: 200)",
    )
    parser.add_argument(
        "--extractor-epochs",
        type=int,
        default=4,
        help="epochs of the trainable extractors (default: 4)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="feature extraction processes (default: 2)"
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="stop after extracting the features and checking that they separate the classes",
    )
    parser.add_argument(
        "--skip-missing-videos",
        action="store_true",
        help="train on the annotated videos that exist (part of UnAV-100), counting the others",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value for the LoCo config")
    args = parser.parse_args(argv)
    try:
        for flag, limit in LIMITED_FLAGS.items():
            if getattr(args, flag) is not None:
                check_limit(limit, getattr(args, flag), "--" + flag.replace("_", "-"))
    except LimitError as error:
        parser.error(str(error))
    if not 0 < args.validation_share < 1:
        parser.error("--validation-share must lie between 0 and 1")
    workdir = args.workdir or args.out.with_name(args.out.name + ".work")
    return Settings(
        videos=args.videos,
        annotations=args.annotations,
        out=args.out,
        workdir=workdir,
        extractors=args.extractors,
        timing=args.timing,
        vggish=args.vggish,
        vggish_pca=args.vggish_pca,
        background=args.background,
        epochs=args.epochs,
        config=args.config,
        overrides=args.overrides,
        validation_share=args.validation_share,
        extractor_clips=args.extractor_clips,
        extractor_epochs=args.extractor_epochs,
        workers=args.workers,
        skip_missing_videos=args.skip_missing_videos,
        check_only=args.check_only,
    )


def main(argv: list[str] | None = None) -> int:
    """Run loco-train; returns the exit status."""
    settings = parse_args(argv)
    from .training_run import run_command  # torch: once the arguments hold

    return run_command(settings, "loco-train")


if __name__ == "__main__":
    sys.exit(main())
