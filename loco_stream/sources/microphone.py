"""A microphone read with sounddevice (PortAudio), resampled to 16 kHz mono on the stream clock.

The device is opened at its own default rate with up to two channels (plugin devices such as
ALSA's ``pulse`` report 32 or more and would only upmix), never at 16 kHz: PortAudio is not asked
to resample. Blocks are mixed to mono and resampled with a streaming soxr resampler.

Timestamps (`CaptureClock`): samples are counted, and the capture time of the first one is
estimated from the callbacks' ``time.monotonic()``: a block is fully captured when its callback
runs, so each callback bounds the start from above, and scheduling delays only loosen the bound.
PortAudio's ``inputBufferAdcTime`` is not used: ALSA's ``pulse`` plugin (the default input of most
Linux desktops) reports ADC times up to 0.6 s early for the first second of a stream, and a
microphone timed that way would hear sounds before they were made.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from loco_stream.sources.base import AudioBlock, MediaSource, MonoResampler, SourceError
from loco_stream.sources.camera import list_cameras

MAX_CHANNELS = 2
RISE = 0.001  # s per s of audio the start estimate may rise (a device clock slower than ours)
QUEUE_SECONDS = 10.0  # raw audio kept for a consumer that falls behind; more is lost (overflows)


def _sounddevice() -> ModuleType:
    """Import sounddevice lazily: it needs the PortAudio library, which only microphones need."""
    try:
        import sounddevice
    except OSError as err:
        raise SourceError(
            f"the microphone needs PortAudio, which could not be loaded ({err}); "
            "install it (Debian/Ubuntu: apt-get install libportaudio2)"
        ) from err
    return sounddevice


class MicrophoneSource(MediaSource):
    """Audio from an input device given by name (a unique part of it), index, or "default"."""

    is_live = True

    def __init__(
        self, device: str | int = "default", block_seconds: float = 0.05, stall_timeout: float = 3.0
    ) -> None:
        super().__init__()
        sd = _sounddevice()
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        try:
            info: Any = (
                sd.query_devices(kind="input")
                if device == "default"
                else sd.query_devices(device, kind="input")
            )
        except (ValueError, sd.PortAudioError) as err:
            raise SourceError(
                f"microphone '{device}' not found: {err}\n{_input_device_lines(sd)}"
            ) from err
        self.device_name = info["name"]
        self.native_rate = int(info["default_samplerate"])
        self.channels = min(int(info["max_input_channels"]), MAX_CHANNELS)
        self.stall_timeout = stall_timeout
        self.has_video, self.has_audio = False, True
        native = f"{self.native_rate} Hz x{self.channels}"
        self.description = f"microphone '{self.device_name}' ({native} -> 16 kHz mono)"
        blocksize = max(1, round(self.native_rate * block_seconds))
        self._blocks: queue.Queue = queue.Queue(max(1, round(QUEUE_SECONDS / block_seconds)))
        self._closed = threading.Event()
        self._lost = False  # samples were lost before the next block
        try:
            self._stream = sd.InputStream(
                device=info["index"],
                samplerate=self.native_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=blocksize,
                callback=self._callback,
            )
        except sd.PortAudioError as err:
            raise SourceError(
                f"microphone '{self.device_name}' could not be opened at {self.native_rate} Hz "
                f"x{self.channels}: {err} (is another program holding it?)"
            ) from err

    def _callback(self, indata: np.ndarray, frames: int, times: Any, status: Any) -> None:
        called_at = time.monotonic()
        if status.input_overflow:
            self.stats.overflows += 1
            self._lost = True
        try:
            self._blocks.put_nowait((indata.copy(), called_at, self._lost))
            self._lost = False
        except queue.Full:
            self.stats.overflows += 1
            self._lost = True

    def __iter__(self) -> Iterator[AudioBlock]:
        resampler = MonoResampler(self.native_rate)
        capture_clock = CaptureClock(self.native_rate)
        self._stream.start()
        while not self._closed.is_set():
            try:
                block, called_at, lost = self._blocks.get(timeout=self.stall_timeout)
            except queue.Empty:
                if self._closed.is_set():
                    return
                raise SourceError(
                    f"microphone '{self.device_name}' delivered no audio for "
                    f"{self.stall_timeout:g} s (unplugged, or taken by another program?)"
                ) from None
            if block is None:
                return
            t = capture_clock.block_time(len(block), called_at, lost)
            out = resampler.push(block, self.clock.stamp(t))
            if out is not None:
                self.stats.audio_seconds += out.duration
                yield out

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._stream.abort()
        self._stream.close()
        try:
            self._blocks.put_nowait((None, None, False))
        except queue.Full:
            pass


class CaptureClock:
    """Monotonic capture time of each block's first sample, from counted samples and callbacks.

    The stream's start is the lowest ``callback time - samples up to the block's end / rate`` seen
    so far (every callback bounds it from above), allowed to rise by `RISE` per second of audio.
    The estimate settles within the first few callbacks; after lost samples it starts over.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._start: float | None = None
        self._counted = 0  # samples up to the end of the last block

    def block_time(self, frames: int, called_at: float, lost: bool = False) -> float:
        if lost:
            self._start, self._counted = None, 0
        self._counted += frames
        bound = called_at - self._counted / self.sample_rate
        if self._start is None:
            self._start = bound
        else:
            self._start = min(self._start + RISE * frames / self.sample_rate, bound)
        return self._start + (self._counted - frames) / self.sample_rate


def _input_device_lines(sd: ModuleType) -> str:
    lines = ["Available input devices:"]
    default_input = sd.default.device[0]
    for index, info in enumerate(sd.query_devices()):
        if info["max_input_channels"] > 0:
            hostapi = sd.query_hostapis(info["hostapi"])["name"]
            mark = " (default)" if index == default_input else ""
            lines.append(
                f"  {index}: {info['name']} [{hostapi}, {info['max_input_channels']} ch, "
                f"{info['default_samplerate']:.0f} Hz]{mark}"
            )
    if len(lines) == 1:
        lines.append("  (none)")
    return "\n".join(lines)


def list_devices() -> str:
    """A readable listing of the input audio devices and of the cameras that open (0..9)."""
    try:
        microphones = _input_device_lines(_sounddevice())
    except SourceError as err:
        microphones = f"Input devices unavailable: {err}"
    cameras = list_cameras()
    camera_lines = ["Cameras:"] + [f"  {line}" for line in cameras or ["(none opened)"]]
    return microphones + "\n" + "\n".join(camera_lines)
