"""A microphone read with sounddevice (PortAudio), resampled to 16 kHz mono on the stream clock.

The device is opened at its own default rate with up to two channels (plugin devices such as
ALSA's ``pulse`` report 32 or more and would only upmix), never at 16 kHz: PortAudio is not asked
to resample. Blocks are mixed to mono and resampled with a streaming soxr resampler.

Timestamps (`CaptureClock`): blocks are spaced by counting samples, anchored at the first block
(and after lost samples) on its callback's time minus its length, the latest moment its first
sample can have been captured, then steered slowly toward the block's ``inputBufferAdcTime``
(PortAudio's clock, moved to ``time.monotonic()`` by the offset between the two clocks read in the
same callback), which adds the device's input latency and follows its clock's drift. An ADC time
that is 0 (not reported) or implausible is replaced by the callback-based time: ALSA's ``pulse``
plugin, for one, claims up to 0.6 s of input latency at start that it does not have, so the ADC
time is never trusted as an anchor.
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
# A block's first sample was captured in [callback - block - MAX_INPUT_LATENCY_S,
# callback - block + CALLBACK_JITTER_S]: ADC times outside are not believed, and counted times
# outside are re-anchored (samples were lost, or the device clock stepped).
MAX_INPUT_LATENCY_S = 0.2
CALLBACK_JITTER_S = 0.05
SLEW = 0.02  # fraction of the counted time's error corrected per block (time constant ~50 blocks)
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
        now = time.monotonic()
        adc = times.inputBufferAdcTime
        captured = adc + (now - times.currentTime) if adc else None
        if status.input_overflow:
            self.stats.overflows += 1
        try:
            self._blocks.put_nowait((indata.copy(), captured, now, bool(status.input_overflow)))
        except queue.Full:
            self.stats.overflows += 1

    def __iter__(self) -> Iterator[AudioBlock]:
        resampler = MonoResampler(self.native_rate)
        capture_clock = CaptureClock(self.native_rate)
        self._stream.start()
        while not self._closed.is_set():
            try:
                block, captured, called_at, lost = self._blocks.get(timeout=self.stall_timeout)
            except queue.Empty:
                if self._closed.is_set():
                    return
                raise SourceError(
                    f"microphone '{self.device_name}' delivered no audio for "
                    f"{self.stall_timeout:g} s (unplugged, or taken by another program?)"
                ) from None
            if block is None:
                return
            t = capture_clock.block_time(len(block), captured, called_at, lost)
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
            self._blocks.put_nowait((None, None, None, False))
        except queue.Full:
            pass


class CaptureClock:
    """Capture time of each block's first sample: samples counted, steered to the device."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._next: float | None = None  # where the next block starts, by counting

    def block_time(
        self, frames: int, adc_time: float | None, called_at: float, lost: bool = False
    ) -> float:
        """Capture time of a block given its mapped ADC time (or None) and its callback's time."""
        duration = frames / self.sample_rate
        latest = called_at - duration  # all of the block was captured before its callback

        def possible(t: float | None) -> bool:
            return t is not None and -MAX_INPUT_LATENCY_S <= t - latest <= CALLBACK_JITTER_S

        if lost or not possible(self._next):
            t = latest
        else:
            target = adc_time if possible(adc_time) else latest
            t = self._next + SLEW * (target - self._next)
        self._next = t + duration
        return t


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
