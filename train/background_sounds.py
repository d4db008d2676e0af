"""The sound of a background clip: speech, music, sound-theme sounds, room noise or a synthetic
scene's audio, mixed in layers at the clip's sample rate and channel count."""

from __future__ import annotations

import tempfile
import wave
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import soxr

from loco_stream.synth.classes import SAMPLE_RATE as SYNTH_RATE
from loco_stream.synth.render import render_audio
from loco_stream.synth.scenario import Scenario

from .background_midi import midi_song
from .background_plan import SPLITS, ClipPlan
from .background_sources import (
    PROGRAMS,
    SENTENCE_IDS,
    SENTENCES,
    SOUND_THEME,
    SOUNDFONT,
    VOICES,
    BackgroundError,
    need_tool,
    run_tool,
    theme_files,
)


def render_sound(plan: ClipPlan, rng: np.random.Generator, scene: Scenario | None) -> np.ndarray:
    """The clip's audio (N, C) float32 at its sample rate."""
    rate, count = plan.sample_rate, round(plan.seconds * plan.sample_rate)
    mix = np.zeros((count, plan.channels), np.float32)
    for kind in plan.sound:
        if kind == "silence":
            continue
        if kind == "speech":
            layer = _speech(plan, rng, count)
        elif kind == "music":
            layer = _music(plan, rng, count)
        elif kind == "theme":
            layer = _theme(plan, rng, count)
        elif kind == "noise":
            quiet = len(plan.sound) > 1 and kind != plan.sound[0]
            layer = _room_noise(plan, rng, count, 0.3 if quiet else 1.0)
        else:  # synth
            assert scene is not None
            mono = render_audio(scene, SYNTH_RATE)
            layer = _fit(_resample(mono[:, None], SYNTH_RATE, rate), count)
        mix += _to_channels(layer, plan.channels, rng)
    peak = float(np.abs(mix).max(initial=0.0))
    return mix * (0.95 / peak) if peak > 0.95 else mix


def _speech(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """Sentences spoken by espeak-ng with pauses between them."""
    need_tool("espeak-ng", "apt-get install espeak-ng")
    rate, out, at = plan.sample_rate, np.zeros((count, 1), np.float32), 0
    at = int(rng.uniform(0.0, 1.5) * rate)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        while at < count:
            sentence = int(rng.choice(SENTENCE_IDS[plan.split]))
            voice = str(rng.choice(VOICES[plan.split]))
            speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
            command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch)]
            run_tool([*command, "-w", str(wav), SENTENCES[sentence]])
            voice_rate, samples = _read_wav(wav)
            spoken = _resample(samples.mean(axis=1, keepdims=True), voice_rate, rate)
            spoken *= 0.5 / max(float(np.abs(spoken).max()), 1e-6)
            part = spoken[: count - at]
            out[at : at + len(part)] += part
            plan.sources += [f"espeak-sentence:{sentence}", f"espeak-voice:{voice}"]
            at += len(spoken) + int(rng.uniform(0.3, 2.0) * rate)
    return out


def _music(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """A generated MIDI piece rendered by fluidsynth with the General MIDI soundfont."""
    need_tool("fluidsynth", "apt-get install fluidsynth")
    if not SOUNDFONT.is_file():
        raise BackgroundError(f"no soundfont at {SOUNDFONT}: apt-get install fluid-soundfont-gm")
    # even: train, odd: held out
    midi_seed = 2 * int(rng.integers(2**30)) + SPLITS.index(plan.split)
    programs = [int(p) for p in rng.choice(PROGRAMS[plan.split], 2, replace=False)]
    plan.sources += [f"midi-seed:{midi_seed}", *(f"gm-program:{p}" for p in programs)]
    song = midi_song(midi_seed, plan.seconds + 1.0, programs)
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        midi.write_bytes(song)
        rate = plan.sample_rate
        run_tool(
            [
                "fluidsynth",
                "-ni",
                "-q",
                "-g",
                "0.5",
                "-r",
                str(rate),
                "-F",
                str(wav),
                str(SOUNDFONT),
                str(midi),
            ]
        )
        file_rate, samples = _read_wav(wav)
    samples = _resample(samples, file_rate, rate)
    samples *= 0.15 / max(float(np.sqrt(np.mean(samples**2))), 1e-6)
    return _fit(samples, count)


def _theme(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """Sounds of Debian's freedesktop sound theme at random moments."""
    names = theme_files(plan.split)
    out = np.zeros((count, 2), np.float32)
    for _ in range(max(1, int(rng.poisson(plan.seconds / 5.0)))):
        name = str(rng.choice(names))
        plan.sources.append(f"sound-theme:{name}")
        sound = _decode_audio(SOUND_THEME / name, plan.sample_rate)
        sound *= float(rng.uniform(0.2, 0.6)) / max(float(np.abs(sound).max()), 1e-6)
        at = int(rng.integers(0, count))
        part = sound[: count - at]
        out[at : at + len(part)] += part
    return out


def _room_noise(plan: ClipPlan, rng: np.random.Generator, count: int, level: float) -> np.ndarray:
    """Pink or brown noise, and maybe mains hum and a fan."""
    rate = plan.sample_rate
    colour = "pink" if rng.random() < 0.5 else "brown"
    kinds = [colour] + [k for k in ("hum", "fan") if rng.random() < 0.5]
    plan.noise += kinds
    t = np.arange(count) / rate
    exponent = 1.0 if colour == "pink" else 2.0
    out = float(rng.uniform(0.01, 0.05)) * _coloured(rng, count, rate, exponent)
    if "hum" in kinds:
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(w * np.sin(2 * np.pi * k * mains * t) for k, w in ((1, 1.0), (2, 0.5), (3, 0.3)))
        out += float(rng.uniform(0.005, 0.03)) * hum
    if "fan" in kinds:
        blade = float(rng.uniform(40.0, 160.0))  # blade-pass frequency, Hz
        whirr = np.sin(2 * np.pi * blade * t) + 0.4 * np.sin(4 * np.pi * blade * t)
        swell = 1.0 + 0.2 * np.sin(2 * np.pi * float(rng.uniform(0.1, 0.5)) * t)
        air = _coloured(rng, count, rate, 0.5)
        out += float(rng.uniform(0.01, 0.04)) * swell * (0.5 * whirr + air)
    return (level * out).astype(np.float32)[:, None]


def _coloured(rng: np.random.Generator, count: int, rate: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power ~ 1/f**exponent."""
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.maximum(np.fft.rfftfreq(count, 1.0 / rate), 20.0)
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), count)
    return noise / max(float(noise.std()), 1e-12)


def _to_channels(layer: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 1|2) -> (N, channels): mono layers are panned at random in stereo."""
    if layer.shape[1] == channels:
        return layer
    if channels == 1:
        return layer.mean(axis=1, keepdims=True)
    angle = float(rng.uniform(0.15, 0.35)) * np.pi
    return layer * np.float32([np.cos(angle), np.sin(angle)]) * np.float32(np.sqrt(2))


def _fit(samples: np.ndarray, count: int) -> np.ndarray:
    """Cut or zero-pad (N, C) to ``count`` rows."""
    out = np.zeros((count, samples.shape[1]), np.float32)
    out[: min(count, len(samples))] = samples[:count]
    return out


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples.astype(np.float32)
    return soxr.resample(samples.astype(np.float32), rate_in, rate_out).reshape(
        -1, samples.shape[1]
    )


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples (N, C) float32) of a 16-bit PCM wav file."""
    with wave.open(str(path)) as file:
        rate, channels = file.getframerate(), file.getnchannels()
        if file.getsampwidth() != 2:
            raise BackgroundError(f"{path}: expected 16-bit PCM")
        data = np.frombuffer(file.readframes(file.getnframes()), np.int16)
    return rate, (data.reshape(-1, channels) / 32768.0).astype(np.float32)


@lru_cache(maxsize=64)
def _decode_audio_cached(path: Path, rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray() for f in resampler.resample(frame)]
    parts += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(parts, axis=1).T.astype(np.float32)  # (N, 2)


def _decode_audio(path: Path, rate: int) -> np.ndarray:
    return _decode_audio_cached(path, rate).copy()
