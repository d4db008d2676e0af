"""loco-stream: real-time detection of audio-visual events (heard and seen) with LoCo.

``from loco_stream import Detector`` is the embedding API; it is imported on first use, so
``import loco_stream`` stays light.
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loco_stream.stream.detector import Detector

try:
    __version__ = importlib.metadata.version("loco-stream")
except importlib.metadata.PackageNotFoundError:  # an uninstalled source tree
    __version__ = "0+unknown"

__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from loco_stream.stream.detector import Detector

        return Detector
    raise AttributeError(f"module 'loco_stream' has no attribute {name!r}")
