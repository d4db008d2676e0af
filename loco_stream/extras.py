"""A missing optional part of the install, named in one line: which extra brings it."""

from __future__ import annotations

import importlib.util
import sys


def require_extra(module: str, extra: str, prog: str) -> None:
    """Where ``module`` is not installed, exit (status 2) with one line naming the extra to
    install, instead of a ``ModuleNotFoundError`` traceback later. It is found, not imported: a
    ``--help`` stays fast."""
    if importlib.util.find_spec(module) is None:
        print(
            f"{prog}: error: {module} is not installed; it comes with the '{extra}' extra: "
            f"pip install 'loco-stream[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2)
