"""A missing optional part of the install, named in one line: which extra brings it."""

from __future__ import annotations

import importlib
import sys


def require_extra(module: str, extra: str, prog: str) -> None:
    """Import ``module``; where it is missing, exit (status 2) with one line naming the extra
    to install, instead of a ``ModuleNotFoundError`` traceback."""
    try:
        importlib.import_module(module)
    except ImportError:
        print(
            f"{prog}: error: {module} is not installed; it comes with the '{extra}' extra: "
            f"pip install 'loco-stream[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
