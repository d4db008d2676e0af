"""The streaming engine: online detection over timestamped frames and audio, and its outputs."""

from loco_stream.stream.batched import BatchedModel
from loco_stream.stream.detector import Detector
from loco_stream.stream.engine import StreamEngine, StreamStats
from loco_stream.stream.lane import StreamEvent, StreamReport, StreamSpec
from loco_stream.stream.multi import MultiStreamEngine
from loco_stream.stream.multi_detector import MultiDetector
from loco_stream.stream.output import JsonlWriter, event_line
from loco_stream.stream.ring_buffer import FeatureRing
from loco_stream.stream.stitch import DEFAULT_THRESHOLD, Event, StitchConfig, Stitcher
from loco_stream.stream.timeline import StreamStalled

__all__ = [
    "DEFAULT_THRESHOLD",
    "BatchedModel",
    "Detector",
    "Event",
    "FeatureRing",
    "JsonlWriter",
    "MultiDetector",
    "MultiStreamEngine",
    "StitchConfig",
    "Stitcher",
    "StreamEngine",
    "StreamEvent",
    "StreamReport",
    "StreamSpec",
    "StreamStalled",
    "StreamStats",
    "event_line",
]
