"""The synthetic generator as a live source: a scenario rendered frame by frame and block by block.

Frames (``render_frame``, 16 fps) are stamped with their instant and handed out at it; audio
(``render_audio``) comes in blocks handed out once their last sample is "captured", as from a
microphone. Paced by the wall clock by default (``realtime=False``: as fast as it renders). The
source knows its scenario's ground truth, so a demo can say which true events were found.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from ..synth import CLASSES, FPS, SAMPLE_RATE, Scenario, render_audio, render_frame, sample_scenario
from .base import AudioBlock, Item, MediaSource, VideoFrame

BLOCK_SECONDS = 0.1  # audio block length
DEMO_SPLIT = "demo"  # scenarios of their own, apart from the train/validation/test clips


class DemoSource(MediaSource):
    """Synthetic clip ``index`` of seed ``seed`` (``duration`` overrides its length), live."""

    def __init__(
        self,
        seed: int = 0,
        index: int = 0,
        duration: float | None = None,
        realtime: bool = True,
        block_seconds: float = BLOCK_SECONDS,
    ) -> None:
        super().__init__()
        self.scenario: Scenario = sample_scenario(seed, index, duration, split=DEMO_SPLIT)
        self.realtime = self.is_live = realtime
        self.block_samples = round(block_seconds * SAMPLE_RATE)
        self.has_video = self.has_audio = True
        pace = "real time" if realtime else "as fast as it renders"
        self.description = (
            f"demo seed {seed} ({self.scenario.duration:.1f} s, "
            f"{len(self.scenario.events)} events, {FPS} fps + {SAMPLE_RATE} Hz, {pace})"
        )
        self._closed = threading.Event()

    @property
    def ground_truth(self) -> list[tuple[float, float, int]]:
        """The true audio-visual events: (start s, end s, label_id), by start."""
        return list(self.scenario.events)

    @staticmethod
    def label(label_id: int) -> str:
        return CLASSES[label_id].name

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Item]:
        scenario = self.scenario
        total_samples = round(scenario.duration * SAMPLE_RATE)
        frame, sample = 0, 0  # next frame index, next audio sample
        start = time.monotonic()
        self.clock.stamp(start)  # t=0 is now
        while not self._closed.is_set():
            frame_t = frame / FPS if frame < scenario.num_frames else None
            block_end = min(sample + self.block_samples, total_samples)
            block_ready = block_end / SAMPLE_RATE if sample < total_samples else None
            if frame_t is None and block_ready is None:
                return
            is_frame = block_ready is None or (frame_t is not None and frame_t <= block_ready)
            release = frame_t if is_frame else block_ready
            if self.realtime:
                delay = start + release - time.monotonic()
                if delay > 0 and self._closed.wait(delay):
                    return
            if is_frame:
                self.stats.frames += 1
                frame += 1
                yield VideoFrame(frame_t, render_frame(scenario, frame_t))
            else:
                t0, t1 = sample / SAMPLE_RATE, block_end / SAMPLE_RATE
                samples = render_audio(scenario, SAMPLE_RATE, start=t0, end=t1)
                self.stats.audio_seconds += len(samples) / SAMPLE_RATE
                sample = block_end
                yield AudioBlock(t0, samples, SAMPLE_RATE)
