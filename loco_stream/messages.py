"""The command lines' warnings in the package's words: ``PROG: warning: ...``, one line each."""

from __future__ import annotations

import logging
import sys
import warnings


def plain_messages(prog: str) -> None:
    """Print Python warnings and log records as ``prog: warning: message`` lines (no source
    lines, no module paths)."""
    for level in (logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format=f"{prog}: %(levelname)s: %(message)s", level=logging.WARNING)
    warnings.showwarning = lambda message, *rest, **kwargs: print(
        f"{prog}: warning: {message}", file=sys.stderr, flush=True
    )
