"""Train and score every model variant on the same features: what each idea of LoCo buys.

    python -m train.variants --config configs/edge.yaml [section.key=value ...]
        [--variants loco baseline ...]

Each variant trains with the config's settings into ``<train.output_dir>_<variant>``, is selected
on the validation split and scored on the test split; a markdown table of test mAP (0.5–0.9 and
the 0.1–0.9 average) is printed and written to ``<train.output_dir>_variants.json``.

A variant whose run already reached the configured epochs is scored, not retrained; one that
stopped early resumes from its ``last.pt``. So several processes can each train some variants
(one thread each on a small machine) and a final call with all of them prints the whole table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loco_stream.config import VARIANTS, Config, ConfigError, load_config

from .checkpoint import CheckpointError, load_checkpoint, load_model
from .data import DataError
from .evaluate import evaluate_split
from .loop import train


def train_or_resume(config: Config, progress: bool) -> Path:
    """Train a variant, resume its stopped run, or return the best checkpoint of a finished one."""
    output_dir = Path(config.train.output_dir)
    last, best = output_dir / "last.pt", output_dir / "best.pt"
    if not last.is_file():
        return train(config, progress=progress)
    if load_checkpoint(last)["epoch"] >= config.train.epochs and best.is_file():
        print(f"{config.model.variant}: already trained in {output_dir}", flush=True)
        return best
    return train(config, resume=str(last), progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.variants", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    rows = {}
    try:
        base = load_config(args.config, args.overrides)
        for variant in args.variants:
            output_dir = f"{base.train.output_dir}_{variant}"
            config = load_config(
                args.config,
                [*args.overrides, f"model.variant={variant}", f"train.output_dir={output_dir}"],
            )
            best = train_or_resume(config, progress=not args.quiet)
            model, stored, names = load_model(best)
            result, _ = evaluate_split(model, stored, names, stored.data.test_split, progress=False)
            rows[variant] = {
                "mAP": dict(zip(result.tious, result.mAP, strict=True)),
                "average": result.average,
            }
            print(f"{variant}: test average mAP {result.average:.2f}", flush=True)
    except (ConfigError, DataError, CheckpointError) as error:
        print(f"train.variants: error: {error}", file=sys.stderr)
        return 2
    lines = [
        "| variant | mAP@0.5 | @0.6 | @0.7 | @0.8 | @0.9 | avg 0.1–0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in rows.items():
        cells = [f"{row['mAP'][t]:.1f}" for t in (0.5, 0.6, 0.7, 0.8, 0.9)]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | **{row['average']:.1f}** |")
    print("\n".join(lines))
    Path(f"{base.train.output_dir}_variants.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
