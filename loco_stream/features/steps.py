"""Cutting timestamped media into steps: the one definition shared by training and serving.

Step ``i`` covers stream time ``[i * step, (i + 1) * step)``. Its inputs are

- audio: the ``samples_per_step`` samples of that interval on the 16 kHz stream grid (a gap in the
  audio is filled with silence; samples that arrive for time already covered are dropped);
- video: ``frames_per_step`` frames, the picture *on screen* at ``frames_per_step`` evenly spaced
  instants inside the step (the latest frame at or before each instant: sample-and-hold), each
  resized to ``frame_size`` x ``frame_size``. Variable frame rates, dropped frames and any camera
  rate therefore give the same kind of input as the 16 fps files the model was trained on.

A step is complete once audio reaches its end and a frame at or after its end has arrived (or the
stream has ended). Only complete steps are emitted; the last partial step of a stream is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..sources.base import AudioBlock, VideoFrame

AUDIO_JITTER_SECONDS = 0.02  # block timestamps this close to the expected time count as contiguous


@dataclass(frozen=True)
class StepSpec:
    """Shape of one step's inputs (stored in the extractor graphs' metadata)."""

    step_seconds: float = 0.25
    sample_rate: int = 16000
    frames_per_step: int = 4
    frame_size: int = 64

    @property
    def samples_per_step(self) -> int:
        return int(round(self.step_seconds * self.sample_rate))


@dataclass
class Step:
    index: int  # step i covers [i * step_seconds, (i + 1) * step_seconds)
    audio: np.ndarray  # (samples_per_step,) float32
    frames: np.ndarray  # (frames_per_step, frame_size, frame_size, 3) uint8 RGB


def resize_frame(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, area interpolation."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


class StepAssembler:
    """Feed ``VideoFrame``s and ``AudioBlock``s (any order between kinds); take complete ``Step``s.

    Memory is bounded: audio is kept from the first incomplete step on, frames only as far back as
    the first incomplete step needs.
    """

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self.next_step = 0
        self._audio = np.zeros(0, dtype=np.float32)  # samples from _audio_start on
        self._audio_start = 0  # global sample index of _audio[0]
        self._frames: deque[tuple[float, np.ndarray]] = deque()  # (t, resized frame)
        self._latest_frame_time = -np.inf
        self._ended = False
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
        self._frames.append((frame.t, resize_frame(frame.image, self.spec.frame_size)))

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
        """Sample-and-hold: the latest frame at or before each instant of the step."""
        spec = self.spec
        instants = (step + (np.arange(spec.frames_per_step) + 0.5) / spec.frames_per_step) * (
            spec.step_seconds
        )
        times = np.array([t for t, _ in self._frames])
        chosen = np.clip(np.searchsorted(times, instants, side="right") - 1, 0, None)
        return np.stack([self._frames[i][1] for i in chosen])

    def steps(self) -> Iterator[Step]:
        """Every step that is complete now, in order."""
        spec = self.spec
        while self._audio_ready(self.next_step) and self._video_ready(self.next_step):
            step = self.next_step
            begin = step * spec.samples_per_step - self._audio_start
            audio = self._audio[begin : begin + spec.samples_per_step].copy()
            frames = self._frames_of(step)
            self.next_step += 1
            self._forget_before(self.next_step)
            yield Step(step, audio, frames)

    def _forget_before(self, step: int) -> None:
        drop = step * self.spec.samples_per_step - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start += drop
        start_time = step * self.spec.step_seconds
        # keep the last frame at or before the step start (it is on screen then), drop older ones
        while len(self._frames) > 1 and self._frames[1][0] <= start_time:
            self._frames.popleft()
