"""Media sources of the streaming engine: camera, microphone, file, a merge of two, and a live
camera + microphone pair that reopens itself.

Every source yields `VideoFrame` (RGB uint8) and `AudioBlock` (16 kHz mono float32) items stamped
in seconds on one stream clock (t=0 at the first sample), with times taken from the source itself.
"""

from loco_stream.sources.base import (
    TARGET_SAMPLE_RATE,
    AudioBlock,
    MediaSource,
    SourceError,
    SourceStats,
    StreamClock,
    VideoFrame,
)
from loco_stream.sources.camera import CameraSource
from loco_stream.sources.file import FileSource
from loco_stream.sources.merge import MergedSource
from loco_stream.sources.microphone import MicrophoneSource, list_devices
from loco_stream.sources.reopening import ReopeningSource

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioBlock",
    "CameraSource",
    "FileSource",
    "MediaSource",
    "MergedSource",
    "MicrophoneSource",
    "ReopeningSource",
    "SourceError",
    "SourceStats",
    "StreamClock",
    "VideoFrame",
    "list_devices",
]
