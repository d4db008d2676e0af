"""``python export/to_onnx.py``: the historical name of ``python -m export`` (the same command).

    python export/to_onnx.py [--checkpoint CKPT] --out DIR [...]

The graph-level steps live in `export.graphs` (shared) and `export.window_graph`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/to_onnx.py`: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.__main__ import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
