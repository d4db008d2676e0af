"""Test media without hardware: clips with known content, a paced fake camera, a virtual microphone.

- `make_clip`: an H.264/AAC mp4 written with PyAV; frame i shows i in binary as 8 white/black
  bars (`frame_index` reads it back), the audio is a sine tone of known frequency.
- `FakeCamera`: ``ffmpeg -re -i clip.mp4 -an -f mpjpeg FIFO``, a live MJPEG stream at real-time pace
  that ``cv2.VideoCapture`` reads like a network camera.
- `VirtualMicrophone`: a private PulseAudio server (temporary HOME and XDG_RUNTIME_DIR) with null
  sinks whose monitors are remapped to sources, and an ``.asoundrc`` routing ALSA's ``pulse``
  device to it; ``paplay --device=SINK tone.wav`` then plays into what PortAudio records.
  PortAudio reads the ALSA configuration when it initialises, so microphone code runs in a
  subprocess with `VirtualMicrophone.env`: ``python tests/media.py record ...`` (see `main`).
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

BARS = 8  # bits of the frame index drawn per frame
ASOUNDRC = """pcm.!default { type pulse }
ctl.!default { type pulse }
pcm.pulse { type pulse }
ctl.pulse { type pulse }
"""


def make_clip(
    path: Path,
    *,
    duration: float = 2.0,
    fps: int = 10,
    video_pts_ms: list[int] | None = None,
    size: tuple[int, int] = (160, 120),
    audio_rate: int | None = 44100,
    channels: int = 2,
    tone_hz: float = 440.0,
    faststart: bool = True,
    paint: Callable[[int, tuple[int, int]], np.ndarray] | None = None,
) -> Path:
    """Write an mp4: frames at ``video_pts_ms`` (default: every 1/fps s), tone audio unless
    ``audio_rate`` is None. ``faststart`` puts the index first, so a truncated copy stays readable.
    ``paint(index, size)`` draws frame ``index`` (default: its index as bars, ``bars_image``).
    """
    paint = paint or bars_image
    pts_ms = video_pts_ms or [round(i * 1000 / fps) for i in range(round(duration * fps))]
    millisecond = fractions.Fraction(1, 1000)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = millisecond
        if audio_rate:
            audio = out.add_stream("aac", rate=audio_rate)
            audio.layout = "stereo" if channels == 2 else "mono"
        for index, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(paint(index, size), format="rgb24")
            frame.pts, frame.time_base = pts, millisecond
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio_rate:
            mux_tone_frames(out, audio, sine(tone_hz, duration, audio_rate), audio_rate, channels)
    return path


def mux_tone_frames(
    out: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    wave: np.ndarray,
    rate: int,
    channels: int,
) -> None:
    """Encode mono ``wave`` (copied to every channel) into ``stream`` in 1024-sample frames."""
    planes = np.ascontiguousarray(np.tile(wave, (channels, 1)))
    for start in range(0, len(wave), 1024):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes[:, start : start + 1024]),
            format="fltp",
            layout=stream.layout.name,
        )
        frame.sample_rate, frame.pts = rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def bars_image(index: int, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    bar = width // BARS
    for bit in range(BARS):
        if index >> bit & 1:
            image[:, bit * bar : (bit + 1) * bar] = 255
    return image


def frame_index(image: np.ndarray) -> int:
    """The index `bars_image` drew, read back from a decoded (RGB) frame."""
    bar = image.shape[1] // BARS
    means = [image[:, bit * bar + 2 : (bit + 1) * bar - 2].mean() for bit in range(BARS)]
    return sum(1 << bit for bit, mean in enumerate(means) if mean > 128)


def sine(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def write_tone_wav(path: Path, hz: float, seconds: float, rate: int = 16000) -> Path:
    pcm = (sine(hz, seconds, rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


class FakeCamera:
    """A live MJPEG stream at real-time pace in a FIFO (``ffmpeg -re ... -f mpjpeg``)."""

    def __init__(self, clip: Path, fifo: Path, loop: bool = False) -> None:
        self.path = fifo
        if not fifo.exists():
            os.mkfifo(fifo)
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re"]
        command += ["-stream_loop", "-1"] if loop else []
        command += ["-i", str(clip), "-an", "-f", "mpjpeg", "-q:v", "5", "-y", str(fifo)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        """Kill the sender, as when a camera is unplugged."""
        self.process.kill()
        self.process.wait()


@dataclass
class Sink:
    name: str  # paplay --device=NAME plays into it
    source: str  # PULSE_SOURCE=SOURCE makes ALSA's pulse device record it
    rate: int
    channels: int


class VirtualMicrophone:
    """A private PulseAudio server: a null sink and a source on its monitor per (rate, channels)."""

    def __init__(self, sinks: list[tuple[int, int]]) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="loco-pulse-"))
        (self._dir / "home").mkdir()
        (self._dir / "run").mkdir(mode=0o700)
        (self._dir / "home" / ".asoundrc").write_text(ASOUNDRC)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PULSE_")},
            "HOME": str(self._dir / "home"),
            "XDG_RUNTIME_DIR": str(self._dir / "run"),
        }
        self.sinks = [Sink(f"sink{r}x{c}", f"mic{r}x{c}", r, c) for r, c in sinks]
        command = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1"]
        command += ["--realtime=no", "--high-priority=no", "--log-target=stderr"]
        command += ["-L", "module-native-protocol-unix auth-anonymous=1"]
        for sink in self.sinks:
            command += ["-L", f"module-null-sink sink_name={sink.name} rate={sink.rate} "]
            command[-1] += f"channels={sink.channels} format=s16le"
            command += ["-L", f"module-remap-source source_name={sink.source} "]
            command[-1] += f"master={sink.name}.monitor"
        self._log = self._dir / "pulseaudio.log"
        with self._log.open("w") as log:  # a child, not a daemon: stopped and reaped by stop()
            self._server = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        for _ in range(50):
            if self._server.poll() is not None:
                break
            if subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        log_tail = self._log.read_text()[-2000:]
        self.stop()
        raise RuntimeError(f"pulseaudio did not start or cannot be reached: {log_tail}")

    def stop(self) -> None:
        self._server.terminate()
        self._server.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def run(self, *args: str, source: str | None = None) -> dict:
        """``python tests/media.py ARGS`` against this server (recording ``source``); its JSON."""
        env = {**self.env, "PULSE_SOURCE": source} if source else self.env
        command = [sys.executable, __file__, *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout)


# ---- microphone code run inside the virtual microphone's environment (a subprocess) ----


def record(device: str, seconds: float, wav: str, sink: str, video: str | None) -> dict:
    """Record ``device`` (merged with a realtime ``video`` file if given) while paplay plays ``wav``
    into ``sink`` (started once the first audio block arrived); times and what was heard."""
    import sounddevice

    from loco_stream.sources import AudioBlock, FileSource, MergedSource, MicrophoneSource

    mic = MicrophoneSource(device)
    source = MergedSource(FileSource(video, realtime=True), mic) if video else mic
    blocks, received, frames = [], [], []
    played_at, player = None, None
    with source:
        for item in source:
            if not isinstance(item, AudioBlock):
                frames.append(item.t)
                continue
            blocks.append(item)
            received.append(source.clock.now())
            if player is None:
                played_at = source.clock.now()
                player = subprocess.Popen(["paplay", f"--device={sink}", wav])
            if received[-1] - received[0] >= seconds:
                break
    player.wait()
    samples = np.concatenate([b.samples for b in blocks])
    loud = [b.t for b in blocks if np.abs(b.samples).max() > 0.1]
    return {
        "device_rate": sounddevice.query_devices(device, "input")["default_samplerate"],
        "native_rate": mic.native_rate,
        "channels": mic.channels,
        "sample_rate": blocks[0].sample_rate,
        "times": [b.t for b in blocks],
        "durations": [b.duration for b in blocks],
        "received": received,
        "played_at": played_at,
        "onset": loud[0] if loud else None,
        "peak_hz": dominant_frequency(samples, blocks[0].sample_rate),
        "overflows": mic.stats.overflows,
        "frames": frames,
    }


def devices(device: str) -> dict:
    """The SourceError message for opening ``device``, and the device listing."""
    from loco_stream.sources import MicrophoneSource, SourceError, list_devices

    try:
        MicrophoneSource(device).close()
        error = None
    except SourceError as err:
        error = str(err)
    return {"error": error, "listing": list_devices()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="record a device while a tone plays; print JSON")
    rec.add_argument("device")
    rec.add_argument("seconds", type=float)
    rec.add_argument("wav")
    rec.add_argument("sink")
    rec.add_argument("--video", help="merge with this file's video, paced in real time")
    err = commands.add_parser("devices", help="print the error opening DEVICE and the listing")
    err.add_argument("device")
    args = parser.parse_args()
    if args.command == "record":
        result = record(args.device, args.seconds, args.wav, args.sink, args.video)
    else:
        result = devices(args.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
