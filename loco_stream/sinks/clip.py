"""An event's clip: an mp4 muxed from the packets a `Recording` encodes, and the snapshot taken
from the frames it kept.

The clip is written under a ``.part`` name and renamed when complete, so a file under its final
name is always whole. Its time 0 is its first frame (a keyframe the recording forced); its audio
starts with the packet that covers that moment and stops with the one that covers ``until``.
The clip keeps at most MAX_STILLS of its frames, evenly spread, for its snapshot: no decoding
afterwards.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import cv2
import numpy as np

JPEG_QUALITY = 85
MAX_SECONDS = 600.0  # a clip takes nothing beyond this much after its begin (a very long event)
MAX_STILLS = 32  # frames kept for the snapshot
FIRST_STILL_SPACING = 0.125  # s between stills, doubled whenever MAX_STILLS would be exceeded


class ClipFile:
    """The clip of stream time ``begin`` (a frame at or after it opens the clip) to ``until``
    (set once the event's end is known; ``done`` then says no later change will come),
    written to ``path`` (an .mp4)."""

    def __init__(self, path: Path, begin: float) -> None:
        self.path = path
        self.begin = begin
        self.until = math.inf
        self.done = False
        self.partial = path.with_name(path.name + ".part")
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}  # "video"/"audio" -> its stream here
        self._stills: list[tuple[float, np.ndarray]] = []  # (stream time, RGB image)
        self._still_spacing = FIRST_STILL_SPACING

    @property
    def last(self) -> float:
        """Stream time of the clip's last moment: ``until``, or MAX_SECONDS after its begin."""
        return min(self.until, self.begin + MAX_SECONDS)

    def wants(self, t: float) -> bool:
        """Whether the moment ``t`` (stream time) belongs in the clip."""
        return self.begin <= t <= self.last

    def overlaps(self, t0: float, t1: float) -> bool:
        """Whether some of the stretch from ``t0`` to ``t1`` (stream time) belongs in the clip."""
        return t1 > self.begin and t0 <= self.last

    def start(self, templates: dict[str, av.stream.Stream]) -> None:
        """Open the file with streams like the recording's ``templates`` ("video", "audio")."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.partial), "w", format="mp4", options={"movflags": "faststart"})
        self._container = container
        for kind, template in templates.items():
            stream = container.add_stream_from_template(template)
            stream.codec_context.extradata = template.codec_context.extradata  # SPS/PPS, ASC
            self._streams[kind] = stream

    def mux(self, kind: str, packet: av.Packet, shift: int) -> None:
        """Write a copy of one of the recording's packets, ``shift`` ticks earlier (its time
        base's ticks from the recording's 0 to the clip's)."""
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts = packet.pts - shift, packet.dts - shift
        copy.time_base, copy.duration = packet.time_base, packet.duration
        copy.is_keyframe = packet.is_keyframe
        copy.stream = self._streams[kind]
        self._container.mux(copy)
        if kind == "video":
            self.frames += 1

    def keep_still(self, t: float, image: np.ndarray) -> None:
        """Keep the frame of stream time ``t`` as a still if it lies a spacing past the last one
        (the stills are thinned to every other one, the spacing doubled, when there are too
        many)."""
        if self._stills and t - self._stills[-1][0] < self._still_spacing:
            return
        self._stills.append((t, image))
        if len(self._stills) > MAX_STILLS:
            self._stills = self._stills[::2]
            self._still_spacing *= 2

    def close(self) -> None:
        """Finish the file and give it its final name; OSError if no frame reached it."""
        if self._container is None:
            raise OSError("no video frame reached the clip")
        self._container.close()
        self._container = None
        os.replace(self.partial, self.path)

    def write_snapshot(self, t: float, path: Path) -> None:
        """Save the kept frame nearest stream time ``t`` as a JPEG at ``path``."""
        if not self._stills:
            raise OSError(f"no frame in {self.path.name}")
        _, image = min(self._stills, key=lambda still: abs(still[0] - t))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("the JPEG encoder failed")
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(jpeg.tobytes())
        os.replace(partial, path)

    def abort(self) -> None:
        """Drop the clip (a failure): close what is open, delete the partial file."""
        close_quietly(self._container)
        self._container = None
        try:
            self.partial.unlink(missing_ok=True)
        except OSError:  # the folder itself is gone or in the way: nothing to delete
            pass


def close_quietly(container: av.container.OutputContainer | None) -> None:
    """Close ``container`` (if any) on the way out of a failure, whatever that raises."""
    if container is None:
        return
    try:
        container.close()
    except (OSError, av.FFmpegError):
        pass
