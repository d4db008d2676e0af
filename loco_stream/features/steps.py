"""Cutting timestamped media into steps: the one definition shared by training and serving.

Step ``i`` covers stream time ``[i * step, (i + 1) * step)``; ``step`` is the extractors' hop.
What its extractors look at is a *context window* ending at the step's end ``E = (i + 1) * step``,
so a live step is computed the moment it completes:

- audio: the last ``audio_window_seconds`` before ``E`` on the 16 kHz stream grid (a gap in the
  audio is filled with silence; samples that arrive for time already covered are dropped);
- video: ``frames_per_step`` frames, the picture *on screen* at ``frames_per_step`` evenly spaced
  instants inside the last ``visual_window_seconds`` before ``E`` (the latest frame at or before
  each instant: sample-and-hold), each resized to ``frame_size`` x ``frame_size``. Variable frame
  rates, dropped frames and any camera rate therefore give the same kind of input.

A window as long as the step (the default) is the step itself. The first steps of a stream, whose
window reaches back before time 0, are padded: audio with silence, video with the first frame
(sample-and-hold clipped to the first picture). Files and streams share this code, so they pad
alike. A video of a single frame gives that picture to every step; frames smaller than
``frame_size`` are enlarged (bilinear), with one warning per stream.

A step is complete once audio reaches its end and a frame at or after its end has arrived (or the
stream has ended). Only complete steps are emitted; the last partial step of a stream is dropped.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import ConfigError
from ..sources.base import AudioBlock, VideoFrame

AUDIO_JITTER_SECONDS = 0.02  # block timestamps this close to the expected time count as contiguous
FRAME_TIME_EPSILON = 1e-6  # a frame this close after an instant counts as on screen (float noise)


@dataclass(frozen=True)
class StepSpec:
    """The hop and the context windows of one step's inputs (stored in the extractor graphs'
    metadata). A window left as None is the step itself."""

    step_seconds: float = 0.25  # hop between steps
    sample_rate: int = 16000
    frames_per_step: int = 4  # frames sampled over the visual window
    frame_size: int = 96  # frames are resized to frame_size x frame_size (the shipped model's)
    audio_window_seconds: float | None = None  # last W seconds of audio before the step's end
    visual_window_seconds: float | None = None  # frames sampled over the last W seconds

    def __post_init__(self) -> None:
        for name in ("audio_window_seconds", "visual_window_seconds"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.step_seconds)
        for name in ("step_seconds", "audio_window_seconds", "visual_window_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"StepSpec.{name} must be positive, got {getattr(self, name)}")
        if self.frames_per_step < 1 or self.frame_size < 1:
            raise ConfigError("StepSpec.frames_per_step and frame_size must be at least 1")

    @property
    def samples_per_step(self) -> int:
        """Hop in samples."""
        return int(round(self.step_seconds * self.sample_rate))

    @property
    def samples_per_window(self) -> int:
        """Audio input of one step, in samples."""
        return int(round(self.audio_window_seconds * self.sample_rate))

    def frame_instants(self, step: int) -> np.ndarray:
        """(frames_per_step,) stream times whose pictures make step ``step``'s video input."""
        window = self.visual_window_seconds
        start = (step + 1) * self.step_seconds - window
        return start + (np.arange(self.frames_per_step) + 0.5) * (window / self.frames_per_step)


@dataclass
class Step:
    index: int  # step i covers [i * step_seconds, (i + 1) * step_seconds)
    audio: np.ndarray  # (samples_per_window,) float32, ending at the step's end
    frames: np.ndarray  # (frames_per_step, frame_size, frame_size, 3) uint8 RGB


def resize_frame(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: area interpolation when shrinking, bilinear
    when enlarging (a frame smaller than the extractor's input)."""
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    enlarging = height < size or width < size
    interpolation = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
    return cv2.resize(image, (size, size), interpolation=interpolation)


class StepAssembler:
    """Feed ``VideoFrame``s and ``AudioBlock``s (any order between kinds); take complete ``Step``s.

    Memory is bounded: audio and frames are kept only as far back as the context windows of the
    first incomplete step reach.
    """

    def __init__(self, spec: StepSpec, first_step: int = 0) -> None:
        self.spec = spec
        self.next_step = first_step  # a stream restarted after a gap begins at a later step
        self._audio = np.zeros(0, dtype=np.float32)  # samples from _audio_start on
        self._audio_start = first_step * spec.samples_per_step  # global sample index of _audio[0]
        self._frames: deque[tuple[float, np.ndarray]] = deque()  # (t, resized frame)
        self._latest_frame_time = -np.inf
        self._ended = False
        self._warned_small_frames = False
        self.audio_gap_seconds = 0.0  # silence inserted for missing audio

    def add(self, item: VideoFrame | AudioBlock) -> None:
        if isinstance(item, VideoFrame):
            self._add_frame(item)
        else:
            self._add_audio(item)

    def end(self) -> None:
        """The stream is over: steps whose audio is complete no longer wait for a later frame."""
        self._ended = True

    def _add_frame(self, frame: VideoFrame) -> None:
        if frame.t < self._latest_frame_time:  # out of order: keep the stream monotonic
            return
        self._latest_frame_time = frame.t
        size = self.spec.frame_size
        height, width = frame.image.shape[:2]
        if (height < size or width < size) and not self._warned_small_frames:
            self._warned_small_frames = True
            warnings.warn(
                f"frames of {width}x{height} are smaller than the extractors' {size}x{size} "
                "input: they are enlarged (bilinear), so the features see a blurred picture",
                stacklevel=2,
            )
        self._frames.append((frame.t, resize_frame(frame.image, size)))

    def _add_audio(self, block: AudioBlock) -> None:
        if block.sample_rate != self.spec.sample_rate:
            raise ValueError(
                f"audio at {block.sample_rate} Hz reached the step assembler; sources must "
                f"resample to {self.spec.sample_rate} Hz"
            )
        samples = block.samples.astype(np.float32, copy=False)
        first = int(round(block.t * self.spec.sample_rate))  # global index of samples[0]
        expected = self._audio_start + len(self._audio)
        jitter = AUDIO_JITTER_SECONDS * self.spec.sample_rate
        if abs(first - expected) <= jitter:
            first = expected  # contiguous within clock jitter
        if first > expected:  # a gap: fill with silence
            self.audio_gap_seconds += (first - expected) / self.spec.sample_rate
            samples = np.concatenate([np.zeros(first - expected, dtype=np.float32), samples])
        elif first < expected:  # overlaps what we already have: drop the old part
            samples = samples[expected - first :]
        self._audio = np.concatenate([self._audio, samples])

    def _audio_ready(self, step: int) -> bool:
        end_sample = (step + 1) * self.spec.samples_per_step
        return self._audio_start + len(self._audio) >= end_sample

    def _video_ready(self, step: int) -> bool:
        if not self._frames:
            return False
        return self._ended or self._latest_frame_time >= (step + 1) * self.spec.step_seconds

    def _frames_of(self, step: int) -> np.ndarray:
        """Sample-and-hold: the latest frame at or before each instant (the first frame for
        instants before it)."""
        instants = self.spec.frame_instants(step)
        times = np.array([t for t, _ in self._frames])
        on_screen = np.searchsorted(times, instants + FRAME_TIME_EPSILON, side="right") - 1
        chosen = np.clip(on_screen, 0, None)
        return np.stack([self._frames[i][1] for i in chosen])

    def steps(self) -> Iterator[Step]:
        """Every step that is complete now, in order."""
        while self._audio_ready(self.next_step) and self._video_ready(self.next_step):
            step = self.next_step
            audio = self._audio_window(step)
            frames = self._frames_of(step)
            self.next_step += 1
            self._forget_before(self.next_step)
            yield Step(step, audio, frames)

    def _audio_window(self, step: int) -> np.ndarray:
        """(samples_per_window,) the audio ending at the step's end, silence before time 0."""
        end = (step + 1) * self.spec.samples_per_step - self._audio_start
        begin = end - self.spec.samples_per_window
        if begin >= 0:
            return self._audio[begin:end].copy()
        return np.concatenate([np.zeros(-begin, dtype=np.float32), self._audio[:end]])

    def _forget_before(self, step: int) -> None:
        """Drop what the windows of step ``step`` and later no longer reach."""
        spec = self.spec
        window_start = (step + 1) * spec.samples_per_step - spec.samples_per_window
        drop = window_start - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start += drop
        start_time = spec.frame_instants(step)[0] + FRAME_TIME_EPSILON
        # keep the last frame at or before the first instant (it is on screen then), drop older ones
        while len(self._frames) > 1 and self._frames[1][0] <= start_time:
            self._frames.popleft()
