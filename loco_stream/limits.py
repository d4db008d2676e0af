"""The ranges of the counts, sizes and limits that the command lines and the Python API share.

One table, one check: a value out of its range is refused by name before any work starts, the
same way whether it came from a flag (``--threads``), a keyword (``Detector(threads=...)``), a
YAML config (``model.embed_dim``) or a model card. The bounds are generous: they stop what
cannot run (a dimension of 10**12, a thousand workers), not unusual choices.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

# name -> (lowest, highest, whole number?)
LIMITS: dict[str, tuple[float, float, bool]] = {
    "threads": (1, 256, True),
    "workers": (1, 256, True),
    "max_events": (1, 100_000, True),
    "threshold": (0.0, 1.0, False),
    "feature_dim": (1, 65_536, True),  # a model's visual_dim, audio_dim; an extractor's output
    "width": (1, 16_384, True),  # a model's embed_dim, head_dim, lcc_dim
    "num_classes": (1, 10_000, True),
    "window": (1, 16_384, True),  # steps per window
    "num_heads": (1, 256, True),
    "layers": (1, 64, True),  # blocks, levels, head layers
    "radius": (0, 16_384, True),
    "epochs": (1, 100_000, True),
    "batch_size": (1, 65_536, True),
    "steps": (1, 100_000_000, True),
    "clips": (1, 10_000_000, True),  # videos to render, extractor clips, calibration clips
}


class LimitError(ValueError):
    """A count, size or limit outside its range (`LIMITS`)."""


def check(limit: str, value: Any, name: str | None = None) -> Any:
    """``value`` when it lies in the range of ``limit`` (and is whole where it must be), else a
    `LimitError` naming ``name`` (default: the limit's own name), the range and the value."""
    low, high, whole = LIMITS[limit]
    name = name or limit
    kind = "a whole number" if whole else "a number"
    fits = isinstance(value, numbers.Integral if whole else numbers.Real)
    fits = fits and not isinstance(value, bool) and math.isfinite(value)
    if not fits:
        raise LimitError(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}")
    if value < low:
        raise LimitError(f"{name} must be at least {low:g}, got {value!r}")
    if value > high:
        raise LimitError(f"{name} must be at most {high:g}, got {value!r}")
    return value


def check_positive(value: Any, name: str, high: float = math.inf) -> float:
    """``value`` when it is a finite number above 0 and at most ``high``, else a `LimitError`."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if number and math.isfinite(value) and 0 < value <= high:
        return value
    bound = "" if high == math.inf else f" and at most {high:g}"
    raise LimitError(f"{name} must be a finite number above 0{bound}, got {value!r}")
