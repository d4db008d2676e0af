"""A user's callback, guarded: an exception it raises is logged with the event it was given and
counted, and never costs another event or another stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class GuardedCallback:
    """Calls ``callback(item)``; an exception is logged (with the item and the traceback's last
    line) and counted in ``errors``, not raised."""

    def __init__(self, callback: Callable[[Any], None], name: str = "on_event") -> None:
        self.callback = callback
        self.name = name
        self.errors = 0

    def __call__(self, item: Any) -> None:
        try:
            self.callback(item)
        except Exception as error:  # the caller's bug: reported, the other events go on
            self.errors += 1
            log.error(
                "%s raised %s: %s, given %r; the other events go on (%d failed call(s) so far)",
                self.name,
                type(error).__name__,
                error,
                item,
                self.errors,
            )
