"""One ``loco-train`` run from its settings to its report: the stages (`stages.run`), then the
table of what each did, the training curve and where the model is."""

from __future__ import annotations

import sys
import time

from loco_stream.config import ConfigError
from loco_stream.features.media import MediaError

from .curve import curve_table
from .data import DataError
from .run_settings import InputError, Settings
from .stages import run

FAILURES = (InputError, ConfigError, DataError, MediaError)  # one-line errors, exit 2


def run_and_report(settings: Settings) -> dict:
    """``run`` plus the final table (the CLI's and ``train.default_model``'s entry point)."""
    began = time.perf_counter()
    results, progress = run(settings)
    print()
    print(progress.table())
    if settings.check_only:
        print(
            f"features checked: {settings.workdir / 'feature_check.json'}; train without "
            "--check-only to go on"
        )
        return results
    print(curve_table(settings.workdir / "loco" / "metrics.jsonl"))
    print(f"training curve: {settings.workdir / 'loco' / 'curve.png'}")
    if "test_average_mAP" in results:
        print(f"test avg mAP {results['test_average_mAP']:.2f}")
    print(f"model directory: {settings.out}  ({time.perf_counter() - began:.0f} s this run)")
    print(f"run it: loco-stream --model {settings.out} --input VIDEO.mp4")
    return results


def run_command(settings: Settings, program: str) -> int:
    """``run_and_report`` as a command's exit status: 0, or 2 after one line naming the problem."""
    try:
        run_and_report(settings)
    except FAILURES as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    return 0
