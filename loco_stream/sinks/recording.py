"""One stretch of a stream encoded once, H.264 + AAC, for every event clip that overlaps it.

    items ──► held HOLD_SECONDS ──► encoded if a clip wants them ──► packets ──► a copy to each
                                                                                 clip they fall in

Clips of events that overlap join one recording, so a second of the stream is encoded once
however many clips hold it, and the encoders start once. Items wait HOLD_SECONDS (of stream
time) before they are encoded, so that a clip whose end becomes known late (an end record comes
a few seconds after the event) still leaves out what lies past it; once a clip's end is final,
`advance` encodes up to it at once and the clip is complete. Encoding ahead for one clip must
not lengthen another whose end is not known yet, so a clip's packets are written only once
their place in it is certain (`_send_to`). A clip that joins before its first frame is encoded
gets a keyframe there (a forced IDR); one whose begin is already encoded starts at the last
keyframe before it, from the packets of the last REJOIN_SECONDS the recording keeps (with
stills for its snapshot), and is shown from the frame on show at its begin (an edit list that
starts on a frame, so every player puts picture and sound in step). Over its CPU budget
(`CpuBudget`) the recording takes fewer frames: one every BUDGET_FLOOR_MS, a clip's first, and
its last where its end is known by then; a keyframe comes at least every KEYFRAME_SECONDS of
stream time however few frames are taken. Video is timed by each frame's stream time (variable
frame rate, ms ticks); audio (16 kHz mono, as the sources hand it out) is laid on one track from
the recording's begin: gaps are filled with silence, overlaps cut, and it is encoded in chunks
of AUDIO_CHUNK_SECONDS (the AAC encoder's cost is mostly per call).
"""

from __future__ import annotations

import io
import math
from collections import deque
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from ..defaults import EVIDENCE_WIDTH
from ..sources.base import TARGET_SAMPLE_RATE, AudioBlock, Item, VideoFrame
from .clip import FIRST_STILL_SPACING, ClipFile, close_quietly
from .cpu_budget import CpuBudget

MILLISECOND = Fraction(1, 1000)
HALF_TICK = 0.0005  # s: a frame's time and its pts in ms differ by this at most
SAMPLE = Fraction(1, TARGET_SAMPLE_RATE)
# libx264: the least CPU (bigger files); zerolatency: no lookahead or B-frames (15% less CPU),
# so each frame's packet comes out at once; a forced keyframe (a clip's first frame) is an IDR
VIDEO_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "crf": "26", "forced-idr": "1"}
AUDIO_OPTIONS = {"aac_coder": "fast"}  # FFmpeg's AAC: half the CPU of its default coder
GOP_FRAMES = 32  # a keyframe at least every this many frames (2 s at 16 fps)
KEYFRAME_SECONDS = 2.0  # and at least this often in stream time, however few frames are taken
NOMINAL_FPS = 16  # the rate given to the encoder; frames keep their own times
HOLD_SECONDS = 5.0  # items wait this long (of stream time) before they are encoded
AUDIO_CHUNK_SECONDS = 0.5  # audio goes to the encoder in chunks this long
AUDIO_TAIL_SECONDS = 0.35  # sound past a clip's end encoded with it: the AAC encoder's delay
THROUGH_SECONDS = 1.0  # a clip is complete once the encoding is this far past its end
REJOIN_SECONDS = 20.0  # packets kept for clips that join with their begin encoded
BUDGET_FLOOR_MS = 500  # over its CPU budget, the encoder still takes a frame this often
JOIN_WINDOW_SECONDS = 15.0  # a clip may join if it begins at most this long before the newest
# item: the packets kept then hold a keyframe before its begin (one every KEYFRAME_SECONDS)


class Recording:
    """Encodes one stream's items from stream time ``begin`` on, at most ``max_fps`` frames a
    second (None: every frame) and ``max_width`` pixels wide (wider frames scaled down), for
    the clips that `join` it; a clip that cannot be written is dropped and listed in ``failed``
    (clip, error) for the owner. While ``budget`` is spent, a frame is encoded only every
    BUDGET_FLOOR_MS (and a clip's first frame, and its last if its end is known); the sound is
    always whole."""

    def __init__(
        self,
        begin: float,
        max_fps: float | None = None,
        max_width: int = EVIDENCE_WIDTH,
        budget: CpuBudget | None = None,
    ) -> None:
        self.begin = begin
        self.max_width = max_width
        self.budget = budget
        self.frames = 0  # frames encoded
        self.skipped = 0  # frames left out because the budget was spent
        self.newest = -math.inf  # stream time of the newest item taken
        self.finished = False  # no more items: what it held is encoded, its encoders flushed
        self._finishing = False  # `finish` is encoding the last items held
        self.failed: list[tuple[ClipFile, Exception]] = []
        self._min_gap_ms = 0 if max_fps is None else 1000 / max_fps  # between frames encoded
        self._clips: list[ClipFile] = []
        self._shifts: dict[ClipFile, dict[str, int]] = {}  # ticks from our 0 to the clip's
        self._wanted_by: dict[int, list[ClipFile]] = {}  # a frame's pts (ms) -> its clips
        # packets of each started clip not yet written: (stream time, kind, packet), in order
        self._unsent: dict[ClipFile, deque[tuple[float, str, av.Packet]]] = {}
        self._held: deque[Item] = deque()  # items not yet encoded, oldest first
        self._position = -math.inf  # stream time of the last item encoded or passed over
        self._advanced = -math.inf  # stream time up to which `advance` encoded everything
        self._box: av.container.OutputContainer | None = None  # holds the encoders, never written
        self._encoders: dict[str, av.stream.Stream] = {}  # "video", "audio"
        self._size: tuple[int, int] | None = None  # (W, H) of the video, both even
        self._last_pts = -1  # ms of the last frame encoded
        self._last_keyframe = -math.inf  # stream time of the last keyframe encoded
        self._next_sample = 0  # audio samples encoded or pending (from begin)
        self._pending_audio: list[np.ndarray] = []  # (n,) float32 each, not yet encoded
        self._pending_samples = 0
        self._recent: deque[tuple[float, str, av.Packet]] = deque()  # (stream time, kind, packet)
        # (stream time, RGB) of the last JOIN_WINDOW_SECONDS: the ring's frames, not copies
        self._recent_stills: deque[tuple[float, np.ndarray]] = deque()

    @property
    def clips(self) -> list[ClipFile]:
        """The clips joined and not yet handed back."""
        return list(self._clips)

    def join(self, clip: ClipFile) -> None:
        """Take ``clip``: it gets the frames it wants from now on, and if its begin is already
        encoded, what was encoded from the last keyframe before it."""
        self._clips.append(clip)
        if clip.begin > self._position:
            return  # nothing of it encoded yet: its first frame will be a keyframe
        video = [packet for _, kind, packet in self._recent if kind == "video"]
        shown_at_begin = max(  # pts of the frame on show at its begin (None: none kept)
            (packet.pts for packet in video if self._time(packet.pts) <= clip.begin + HALF_TICK),
            default=None,
        )
        keyframes = [packet.pts for packet in video if packet.is_keyframe]  # in time order
        before = [pts for pts in keyframes if shown_at_begin is not None and pts <= shown_at_begin]
        if before:  # shown from that frame (an edit list): those before it only decoded
            self._start(clip, before[-1], shown_at_begin)
        elif keyframes:  # else (all lie after it) it starts at the next one
            self._start(clip, keyframes[0], keyframes[0])

    def add(self, item: Item) -> None:
        """Take one frame or audio block (in stream-time order); encode those held
        HOLD_SECONDS behind it."""
        self._held.append(item)
        self.newest = max(self.newest, item.t)
        if self._held[0].t < item.t - HOLD_SECONDS:
            while self._held and self._held[0].t < item.t - HOLD_SECONDS:
                self._encode(self._held.popleft())
            self._send()

    def advance(self, until: float) -> None:
        """Encode now what is held up to ``until`` (a clip's end, now final) and the sound just
        past it, and push the sound through the encoder: that clip is then complete."""
        while self._held and self._held[0].t <= until:
            self._encode(self._held.popleft())
        if self._box is not None:
            for item in self._held:  # encoded again later: the overlap is cut then
                if item.t > until + AUDIO_TAIL_SECONDS:
                    break
                if isinstance(item, AudioBlock):
                    self._add_audio(item)
            self._flush_audio()
        self._advanced = max(self._advanced, until)
        self._send()

    def finish(self) -> None:
        """No more items: encode what is held and flush the encoders."""
        self._finishing = True
        while self._held:
            self._encode(self._held.popleft())
        if self._box is not None:
            self._flush_audio()
            for kind, encoder in self._encoders.items():
                self._deliver(kind, encoder.encode())
            self._box.close()
            self._box = None
        self.finished = True
        self._send()

    def through(self) -> list[ClipFile]:
        """The done clips that have all their packets (all done ones, once finished), handed
        back for their owner to close."""
        ready = [
            clip
            for clip in self._clips
            if clip.done
            and (
                self.finished
                or clip.until <= self._advanced
                or self._position > clip.until + THROUGH_SECONDS
            )
        ]
        for clip in ready:
            self._send_to(clip)
        ready = [clip for clip in ready if clip in self._clips]  # not dropped on the way
        for clip in ready:
            self._clips.remove(clip)
            self._shifts.pop(clip, None)
            self._unsent.pop(clip, None)
        return ready

    def abort(self) -> None:
        """Drop everything: the encoders, and every clip not yet handed back."""
        for clip in self._clips:
            clip.abort()
        self._clips = []
        close_quietly(self._box)
        self._box = None

    def _encode(self, item: Item) -> None:
        self._position = max(self._position, item.t)
        if isinstance(item, VideoFrame):
            self._encode_frame(item)
        elif self._box is not None:  # audio waits for the first frame (it sizes the video)
            if any(clip.overlaps(item.t, item.t + item.duration) for clip in self._clips):
                self._add_audio(item)

    def _open(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if width > self.max_width:
            width, height = self.max_width, max(2, round(height * self.max_width / width))
        self._size = (max(2, width - width % 2), max(2, height - height % 2))
        box = av.open(io.BytesIO(), "w", format="mp4")  # sets the encoders' global headers
        video = box.add_stream("libx264", rate=NOMINAL_FPS, options=VIDEO_OPTIONS)
        video.width, video.height = self._size
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = MILLISECOND
        video.codec_context.gop_size = GOP_FRAMES
        video.codec_context.thread_count = 1
        audio = box.add_stream("aac", rate=TARGET_SAMPLE_RATE, options=AUDIO_OPTIONS)
        audio.layout = "mono"
        for stream in (video, audio):
            stream.codec_context.open()  # the clips' streams copy its headers from here
        self._box = box
        self._encoders = {"video": video, "audio": audio}

    def _encode_frame(self, frame: VideoFrame) -> None:
        wanting = [clip for clip in self._clips if clip.wants(frame.t)]
        pts = round((frame.t - self.begin) * 1000)
        if not wanting or pts < 0 or pts <= self._last_pts:
            return
        if self.frames and pts - self._last_pts < self._min_gap_ms - 0.5:  # over max_fps
            return
        starting = [clip for clip in wanting if clip not in self._shifts]
        if (
            self.budget is not None
            and not starting
            and pts - self._last_pts < BUDGET_FLOOR_MS
            and not self._ends_a_clip(wanting)
            and not self.budget.allows()
        ):
            self.skipped += 1
            return
        image = frame.image  # the stills keep it whole: a snapshot as sharp as the ring has it
        if self._box is None:
            self._open(image)
        width, height = self._size
        scaled = image
        if image.shape[:2] != (height, width):
            scaled = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        # (H * 3 / 2, W) I420 planes: OpenCV converts 3x faster than swscale would inside encode
        planes = cv2.cvtColor(scaled, cv2.COLOR_RGB2YUV_I420)
        picture = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        picture.pts, picture.time_base = pts, MILLISECOND
        if starting or frame.t - self._last_keyframe >= KEYFRAME_SECONDS:
            picture.pict_type = PictureType.I
        packets = self._encoders["video"].encode(picture)
        self._last_pts = pts
        self.frames += 1
        t = self._time(pts)
        for clip in starting:
            self._start(clip, pts, pts)
        self._wanted_by[pts] = wanting
        self._deliver("video", packets)
        if not self._recent_stills or t - self._recent_stills[-1][0] >= FIRST_STILL_SPACING:
            self._recent_stills.append((t, image))
        while self._recent_stills and self._recent_stills[0][0] < self.newest - JOIN_WINDOW_SECONDS:
            self._recent_stills.popleft()  # no clip can join before: the ring's frames, no more
        for clip in wanting:
            if clip in self._shifts:  # started, not dropped on the way
                clip.keep_still(t, image)

    def _ends_a_clip(self, wanting: list[ClipFile]) -> bool:
        """Whether the frame being encoded is the last of one of the clips ``wanting`` it: the
        next frame held lies past that clip's end, or no frame follows (`finish`)."""
        after = math.inf if self._finishing else None  # the stream's last frame, or unknown
        following = next((item.t for item in self._held if isinstance(item, VideoFrame)), after)
        return following is not None and any(clip.last < following for clip in wanting)

    def _time(self, pts: int) -> float:
        """The stream time of a video pts (ms from our begin)."""
        return self.begin + pts / 1000

    def _start(self, clip: ClipFile, pts: int, origin_pts: int) -> None:
        """Open ``clip`` at the keyframe of ``pts`` (ms), its time 0 at ``origin_pts`` (ms, not
        before): it gets what was encoded from the keyframe on (the audio from the packet that
        covers its time 0) and the stills since its time 0."""
        shift = {"video": origin_pts, "audio": origin_pts * TARGET_SAMPLE_RATE // 1000}
        origin = self.begin + origin_pts / 1000
        try:
            clip.start(self._encoders)
        except (OSError, av.FFmpegError) as error:
            self._drop(clip, error)
            return
        self._shifts[clip] = shift
        self._unsent[clip] = deque()
        for t, kind, packet in self._recent:
            if kind == "video":
                inside = packet.pts >= pts
            else:
                inside = packet.pts + packet.duration > shift["audio"]
            if inside:
                self._unsent[clip].append((t, kind, packet))
        for t, image in self._recent_stills:
            if t >= origin:
                clip.keep_still(t, image)

    def _add_audio(self, block: AudioBlock) -> None:
        rate = block.sample_rate
        if rate != TARGET_SAMPLE_RATE:
            return  # sources and `Detector` hand out 16 kHz only
        first = round((block.t - self.begin) * rate)
        samples = block.samples
        if first < self._next_sample:  # overlaps what is written (or starts before begin)
            samples = samples[self._next_sample - first :]
            first = self._next_sample
        if not len(samples):
            return
        if first > self._next_sample:  # a gap
            self._pending_audio.append(np.zeros(first - self._next_sample, np.float32))
        self._pending_audio.append(samples.astype(np.float32))
        self._pending_samples += first - self._next_sample + len(samples)
        self._next_sample = first + len(samples)
        if self._pending_samples >= AUDIO_CHUNK_SECONDS * rate:
            self._flush_audio()

    def _flush_audio(self) -> None:
        """Encode the pending audio as one frame."""
        if not self._pending_samples:
            return
        mono = np.concatenate(self._pending_audio)[None]  # (1, N)
        sound = av.AudioFrame.from_ndarray(mono, format="flt", layout="mono")
        sound.sample_rate = TARGET_SAMPLE_RATE
        sound.pts = self._next_sample - self._pending_samples
        sound.time_base = SAMPLE
        self._pending_audio, self._pending_samples = [], 0
        self._deliver("audio", self._encoders["audio"].encode(sound))

    def _deliver(self, kind: str, packets: list[av.Packet]) -> None:
        """A copy of each packet to every started clip whose span it falls in; the packet is
        kept REJOIN_SECONDS for clips that join later."""
        for packet in packets:
            if kind == "video":
                t = self._time(packet.pts)
                wanting = self._wanted_by.pop(packet.pts, ())
                if packet.is_keyframe:
                    self._last_keyframe = t
            else:
                t = self.begin + packet.pts / TARGET_SAMPLE_RATE
            self._recent.append((t, kind, packet))
            for clip in list(self._clips):
                shift = self._shifts.get(clip)
                if shift is None:
                    continue  # not started
                if kind == "video":
                    inside = clip in wanting
                else:
                    end = packet.pts + packet.duration  # after its first frame, up to its last
                    inside = end > shift["audio"] and t <= clip.last
                if inside:
                    self._unsent[clip].append((t, kind, packet))
        while self._recent and self._recent[0][0] < self.newest - REJOIN_SECONDS:
            self._recent.popleft()

    def _send(self) -> None:
        for clip in list(self._unsent):
            self._send_to(clip)

    def _send_to(self, clip: ClipFile) -> None:
        """Write the clip's packets whose place in it is certain: once its end is known, those
        up to it (the rest are dropped); before, those HOLD_SECONDS behind the newest item (an
        end record cannot come that late). A packet for a clip whose end is not known yet may
        lie past it: another clip's end made the recording encode ahead (`advance`)."""
        unsent = self._unsent.get(clip)
        if unsent is None:  # never started: no frame of it reached us (its closing says so)
            return
        final = clip.done or clip.until < math.inf  # its end will not change
        horizon = math.inf if final else self.newest - HOLD_SECONDS
        try:
            while unsent and unsent[0][0] <= horizon:
                t, kind, packet = unsent.popleft()
                if t <= clip.last + HALF_TICK:  # its pts is rounded to the ms
                    clip.mux(kind, packet, self._shifts[clip][kind])
        except (OSError, av.FFmpegError) as error:
            self._drop(clip, error)

    def _drop(self, clip: ClipFile, error: Exception) -> None:
        """``clip`` cannot be written: abort it and list it for the owner."""
        self._clips.remove(clip)
        self._shifts.pop(clip, None)
        self._unsent.pop(clip, None)
        clip.abort()
        self.failed.append((clip, error))
