"""Build the second packaged model, ``--model efficientnet``, in one command (about 2 hours on 2
cores).

    python -m train.efficientnet_model [--data data/held160]
        [--out loco_stream/assets/efficientnet_model]

1. render a labelled synthetic set with ``loco-synth``'s generator (the 16 demo classes): 160
   train, 20 validation and 24 test clips of 40 s, generator seeds 11, 12 and 13 (the set
   docs/training.md's end-to-end figures come from; the default model never saw these seeds);
2. ``loco-train --extractors efficientnet-logmel`` with no other option: EfficientNet-Lite0
   frozen to stage 5 and a head trained on the clips, the log-mel CNN, LoCo with its default
   recipe, the test score, the exported and verified model directory (``DATA.model``);
3. copy that directory into ``--out`` without its torch checkpoints (``loco.pt``,
   ``extractors.pt``: only the torch backend and a re-export read them; both stay in
   ``DATA.model``), its card listing what is left, so that the package stays small.

Every stage whose output exists is skipped, so an interrupted build resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from loco_stream.bundle import (
    CARD,
    EXTRACTOR_CHECKPOINT,
    PACKAGED_MODELS,
    WINDOW_CHECKPOINT,
    read_card,
    write_card,
)

from .default_model import render
from .run_settings import Settings
from .training_run import run_command

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"train": 11, "validation": 12, "test": 13}
COUNTS = {"train": 160, "validation": 20, "test": 24}
CLIP_SECONDS = 40.0
TORCH_ONLY = (WINDOW_CHECKPOINT, EXTRACTOR_CHECKPOINT)
PACKAGED_NOTE = (
    "Packaged by `python -m train.efficientnet_model`: the model directory below without its "
    "torch checkpoints (`loco.pt`, `extractors.pt`), so `--backend torch` and a re-export need "
    "the directory it was built in. It knows the 16 synthetic demo classes only."
)


def package(model: Path, out: Path) -> None:
    """``model`` into ``out`` without the torch checkpoints; the card is rewritten and checked."""
    card = read_card(model)
    kept = {name: entry for name, entry in card.files.items() if name not in TORCH_ONLY}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in model.iterdir():
        if path.is_file() and path.name not in (*TORCH_ONLY, CARD):
            shutil.copyfile(path, out / path.name)
    write_card(out, dataclasses.replace(card, files=kept))  # reads every listed file back
    notes = (out / "MODEL_CARD.md").read_text() if (out / "MODEL_CARD.md").is_file() else ""
    (out / "MODEL_CARD.md").write_text(
        f"{PACKAGED_NOTE}\n\n{notes}" if notes else PACKAGED_NOTE + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.efficientnet_model", description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "held160")
    parser.add_argument("--out", type=Path, default=PACKAGED_MODELS["efficientnet"])
    args = parser.parse_args(argv)
    render(args.data, COUNTS, seeds=SEEDS, duration=CLIP_SECONDS)
    model = args.data.with_name(args.data.name + ".model")
    settings = Settings(
        videos=args.data / "videos",
        annotations=args.data / "annotations.json",
        out=model,
        workdir=args.data.with_name(args.data.name + ".work"),
        extractors="efficientnet-logmel",
        command="python -m train.efficientnet_model",
    )
    status = run_command(settings, "train.efficientnet_model")
    if status:
        return status
    package(model, args.out)
    print(f"packaged: {args.out} (loco-stream --model efficientnet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
