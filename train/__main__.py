"""Train LoCo.

    python -m train --config configs/NAME.yaml [section.key=value ...] [--resume CKPT]

Under ``torchrun --nproc_per_node K -m train ...`` it trains with DDP (gloo on the CPU).
"""

from __future__ import annotations

import argparse
import sys

from loco_stream.config import ConfigError, load_config

from .checkpoint import CheckpointError
from .data import DataError
from .loop import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--resume", help="checkpoint (last.pt) to continue from")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=3")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        best = train(config, resume=args.resume, progress=not args.quiet)
    except (ConfigError, DataError, CheckpointError) as error:
        print(f"train: error: {error}", file=sys.stderr)
        return 2
    print(f"best checkpoint: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
