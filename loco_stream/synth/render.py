"""Rendering a scenario: RGB frames and a mono waveform, each a pure function of time.

Frame ``k`` and audio sample ``n`` are computed from their own time stamps (and random streams keyed
by the clip and the frame or noise block), never from earlier output, so a live source can render
any stretch on demand and get exactly the samples of a full render.

Frames: a drifting periodic noise texture with flicker, sprites blended with anti-aliased masks
(rasterised once per shape, radius and angle, then cached), and per-frame sensor grain.
Audio: class sounds (additive or FM synthesis, band-limited below Nyquist, gated by their rhythm),
coloured noise (overlap-added blocks), mains hum and clicks, soft-clipped with ``tanh``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import cv2
import numpy as np

from loco_stream.synth.classes import CLASSES, FPS, FRAME_SIZE, SAMPLE_RATE
from loco_stream.synth.scenario import Scenario, Sound, Sprite

# Motion: nominal drift speed (px/s) and the periodic parts.
DRIFT_SPEED = {
    "bounce": 40.0,
    "zigzag": 35.0,
    "pulse": 8.0,
    "spin": 10.0,
    "hop": 14.0,
    "orbit": 0.0,
}
ORBIT_RADIUS, ORBIT_RATE = 14.0, 0.4  # px, revolutions/s
SPIN_RATE = 0.6  # revolutions/s
PULSE_DEPTH, PULSE_RATE = 0.3, 1.5  # relative radius change, Hz
ZIGZAG_AMPLITUDE, ZIGZAG_RATE = 10.0, 1.2  # px, Hz
HOP_HEIGHT, HOP_PERIOD = 28.0, 0.9  # px, s
TEXTURE_SCALE = 0.04  # cycles/px: std of the Gaussian low-pass that makes the background texture
GRAIN_SPAN = 112  # per-frame grain: a crop at a random offset below this from a noise bank
ANGLE_STEPS = 24  # rotations rasterised per shape
SUPERSAMPLE = 4  # anti-aliasing of masks

# Sound.
MAX_HARMONICS = 15
NYQUIST_MARGIN = 0.45  # partials stay below this fraction of the sample rate
FM_RATIO, FM_INDEX = 2.0, 1.5
NOISE_PARTIALS, NOISE_BANDWIDTH = 24, 0.1  # partials spread over pitch * (1 +- bandwidth)
PIP_LENGTH, DOUBLE_GAP = 0.06, 0.15  # s
GATE_RAMP, EDGE_RAMP = 0.005, 0.01  # s, fades inside a beep and at an interval's ends
NOISE_BLOCK = 2048  # samples; noise blocks of twice this length overlap by half
HUM_HARMONICS = (1.0, 0.5, 0.25)
CLICK_LENGTH, CLICK_DECAY = 0.006, 0.0015  # s

# Tags that separate the clip's random streams.
_GRAIN, _NOISE, _CLICK, _TEXTURE = 1, 2, 3, 4


def render_frames(scenario: Scenario) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_s, frame)`` for every frame of the clip; frames are HxWx3 uint8 RGB."""
    for k in range(scenario.num_frames):
        t = k / FPS
        yield t, render_frame(scenario, t)


def render_frame(scenario: Scenario, t: float) -> np.ndarray:
    """The frame at ``t`` seconds (FRAME_SIZE x FRAME_SIZE x 3, uint8 RGB)."""
    key = scenario.key
    backdrop = scenario.backdrop
    shift = (round(backdrop.drift[1] * t), round(backdrop.drift[0] * t))
    texture = np.roll(_texture(key), shift, axis=(0, 1))  # (H, W, 1)
    light = 1.0 + backdrop.flicker * np.sin(2 * np.pi * backdrop.flicker_rate * t)
    colour = np.asarray(backdrop.colour, np.float32)
    frame = (colour + backdrop.texture * texture) * np.float32(light)  # (H, W, 3)
    for sprite in scenario.sprites:
        if sprite.start <= t < sprite.end:
            x, y, radius, step = sprite_pose(sprite, t)
            _blend(frame, _mask(sprite.shape, radius, step), x, y, sprite.colour)
    dy, dx = np.random.default_rng((*key, _GRAIN, round(t * FPS))).integers(0, GRAIN_SPAN, 2)
    frame += backdrop.grain * _grain(key)[dy : dy + FRAME_SIZE, dx : dx + FRAME_SIZE]
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def sprite_pose(sprite: Sprite, t: float) -> tuple[int, int, int, int]:
    """Centre (x, y) in px, radius in px and rotation step of a sprite at ``t``."""
    tau = t - sprite.start
    motion, radius = sprite.motion, sprite.radius
    speed = DRIFT_SPEED[motion] * sprite.speed
    drift_x = speed * np.cos(sprite.heading) * tau
    drift_y = speed * np.sin(sprite.heading) * tau
    angle = 0.0
    if motion == "orbit":
        turn = sprite.phase + 2 * np.pi * ORBIT_RATE * tau
        x = _place(sprite.anchor[0], radius + ORBIT_RADIUS) + ORBIT_RADIUS * np.cos(turn)
        y = _place(sprite.anchor[1], radius + ORBIT_RADIUS) + ORBIT_RADIUS * np.sin(turn)
    elif motion == "zigzag":
        x = _bounce(sprite.anchor[0], radius, drift_x)
        wave = ZIGZAG_AMPLITUDE * np.sin(2 * np.pi * ZIGZAG_RATE * tau + sprite.phase)
        y = _place(sprite.anchor[1], radius + ZIGZAG_AMPLITUDE) + wave
    elif motion == "hop":
        x = _bounce(sprite.anchor[0], radius, drift_x)
        floor = FRAME_SIZE - radius - (FRAME_SIZE - 2 * radius - HOP_HEIGHT) * sprite.anchor[1]
        y = floor - HOP_HEIGHT * abs(np.sin(np.pi * tau / HOP_PERIOD + sprite.phase))
    else:  # bounce, pulse, spin: drift with reflections off the borders
        if motion == "pulse":
            radius *= 1.0 + PULSE_DEPTH * np.sin(2 * np.pi * PULSE_RATE * tau + sprite.phase)
        if motion == "spin":
            angle = sprite.phase + 2 * np.pi * SPIN_RATE * tau
        reach = sprite.radius * (1.0 + PULSE_DEPTH)
        x = _bounce(sprite.anchor[0], reach, drift_x)
        y = _bounce(sprite.anchor[1], reach, drift_y)
    step = round(angle / (2 * np.pi) * ANGLE_STEPS) % ANGLE_STEPS
    return round(x), round(y), max(1, round(radius)), step


def _place(anchor: float, reach: float) -> float:
    """A coordinate ``anchor`` of the way across the range that keeps ``reach`` px inside."""
    return reach + anchor * (FRAME_SIZE - 2 * reach)


def _bounce(anchor: float, reach: float, travel: float) -> float:
    """Position after moving ``travel`` px from the anchor, reflecting off both borders."""
    span = FRAME_SIZE - 2 * reach
    folded = (anchor * span + travel) % (2 * span)
    return reach + (folded if folded < span else 2 * span - folded)


@lru_cache(maxsize=4096)
def _mask(shape: str, radius: int, step: int) -> np.ndarray:
    """Anti-aliased coverage (2R+1, 2R+1, 1) float32 of a shape of circumradius ``radius`` px."""
    half = radius + 1
    size = (2 * half + 1) * SUPERSAMPLE
    canvas = np.zeros((size, size), np.uint8)
    centre = (half + 0.5) * SUPERSAMPLE - 0.5
    scale = radius * SUPERSAMPLE
    fixed = 16  # cv2 sub-pixel shift of 4 bits

    def circle(r: float, value: int) -> None:
        c = round(centre * fixed)
        cv2.circle(canvas, (c, c), round(r * scale * fixed), value, -1, cv2.LINE_8, 4)

    if shape in ("circle", "ring"):
        circle(0.9 if shape == "circle" else 0.95, 255)
        if shape == "ring":
            circle(0.55, 0)
    else:
        u, v = _outline(shape)
        angle = 2 * np.pi * step / ANGLE_STEPS
        x = centre + scale * (u * np.cos(angle) - v * np.sin(angle))
        y = centre + scale * (u * np.sin(angle) + v * np.cos(angle))
        points = np.round(np.stack([x, y], axis=1) * fixed).astype(np.int32)
        cv2.fillPoly(canvas, [points], 255, cv2.LINE_8, 4)
    n = 2 * half + 1
    coverage = canvas.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(1, 3)) / 255.0
    return coverage.astype(np.float32)[..., None]


def _outline(shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Polygon vertices (u, v) of a shape with circumradius 1, y pointing down."""

    def regular(n: int, first: float, r: float | np.ndarray = 1.0) -> tuple[np.ndarray, np.ndarray]:
        a = np.deg2rad(first) + 2 * np.pi * np.arange(n) / n
        return r * np.cos(a), r * np.sin(a)

    if shape == "square":
        return regular(4, 45.0)
    if shape == "diamond":  # a rhombus, taller than wide: not a turned square
        u, v = regular(4, 0.0)
        return 0.65 * u, v
    if shape == "triangle":
        return regular(3, -90.0)
    if shape == "hexagon":
        return regular(6, 0.0, 0.95)
    if shape == "star":
        return regular(10, -90.0, np.where(np.arange(10) % 2, 0.45, 1.0))
    if shape == "cross":
        a, b = 0.3, 0.95
        u = np.array([a, a, b, b, a, a, -a, -a, -b, -b, -a, -a])
        v = np.array([-b, -a, -a, a, a, b, b, a, a, -a, -a, -b])
        return u, v
    raise ValueError(f"unknown shape {shape!r}")


def _blend(
    frame: np.ndarray, alpha: np.ndarray, x: int, y: int, colour: tuple[int, int, int]
) -> None:
    """Blend ``colour`` into ``frame`` in place with coverage ``alpha`` centred at (x, y)."""
    half = alpha.shape[0] // 2
    top, left = y - half, x - half
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + alpha.shape[0], FRAME_SIZE), min(left + alpha.shape[1], FRAME_SIZE)
    if y1 <= y0 or x1 <= x0:
        return
    region = frame[y0:y1, x0:x1]
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    region += a * (np.asarray(colour, np.float32) - region)


@lru_cache(maxsize=8)
def _texture(key: tuple[int, ...]) -> np.ndarray:
    """A smooth periodic noise texture (H, W, 1) of unit std, so that rolling it is seamless."""
    rng = np.random.default_rng((*key, _TEXTURE))
    noise = np.fft.rfft2(rng.standard_normal((FRAME_SIZE, FRAME_SIZE)))
    fy = np.fft.fftfreq(FRAME_SIZE)[:, None]
    fx = np.fft.rfftfreq(FRAME_SIZE)[None, :]
    smooth = np.fft.irfft2(
        noise * np.exp(-(fx**2 + fy**2) / (2 * TEXTURE_SCALE**2)), (FRAME_SIZE,) * 2
    )
    return (smooth / smooth.std()).astype(np.float32)[..., None]


@lru_cache(maxsize=8)
def _grain(key: tuple[int, ...]) -> np.ndarray:
    """A bank of unit-std sensor noise; each frame uses a crop of it (cheaper than fresh noise)."""
    rng = np.random.default_rng((*key, _GRAIN))
    size = FRAME_SIZE + GRAIN_SPAN
    return rng.standard_normal((size, size, 3), dtype=np.float32)


def render_audio(
    scenario: Scenario,
    sample_rate: int = SAMPLE_RATE,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """The waveform (float32 mono in [-1, 1]) from ``start`` to ``end`` s (default: whole clip).

    Chunks rendered back to back are identical to one render of the whole span.
    """
    n0 = round(start * sample_rate)
    n1 = round((scenario.duration if end is None else end) * sample_rate)
    t = np.arange(n0, n1) / sample_rate  # (N,) float64
    mix = np.zeros(n1 - n0)
    for sound in scenario.sounds:
        i0 = max(_first_sample(sound.start, sample_rate), n0) - n0
        i1 = min(_first_sample(sound.end, sample_rate), n1) - n0
        if i1 > i0:
            mix[i0:i1] += _sound_wave(sound, t[i0:i1], sample_rate)
    noise = scenario.noise
    mix += noise.level * _coloured_noise(scenario.key, noise.exponent, n0, n1, sample_rate)
    for k, weight in enumerate(HUM_HARMONICS, start=1):
        mix += noise.hum * weight * np.sin(2 * np.pi * k * noise.hum_freq * t)
    _add_clicks(mix, scenario, n0, sample_rate)
    return np.tanh(mix).astype(np.float32)


def _first_sample(t: float, sample_rate: int) -> int:
    """Index of the first sample at or after ``t`` (robust to float rounding)."""
    return int(np.ceil(t * sample_rate - 1e-6))


def _sound_wave(sound: Sound, t: np.ndarray, sample_rate: int) -> np.ndarray:
    cls = CLASSES[sound.label_id]
    tau = t - sound.start
    pitch = cls.pitch * sound.detune
    phase = 2 * np.pi * pitch * tau + sound.phase
    if cls.timbre == "sine":
        wave = np.sin(phase)
    elif cls.timbre == "fm":
        wave = np.sin(phase + FM_INDEX * np.sin(FM_RATIO * phase))
    elif cls.timbre == "noise":
        rng = np.random.default_rng(sound.seed)
        freqs = pitch * (1 + NOISE_BANDWIDTH * rng.uniform(-1, 1, NOISE_PARTIALS))
        offsets = rng.uniform(0, 2 * np.pi, NOISE_PARTIALS)
        wave = sum(np.sin(2 * np.pi * f * tau + o) for f, o in zip(freqs, offsets, strict=True))
        wave = wave * np.sqrt(1.0 / NOISE_PARTIALS)
    else:  # square: odd harmonics 1/k; saw: all harmonics 1/k
        top = min(MAX_HARMONICS, int(NYQUIST_MARGIN * sample_rate / pitch))
        ks = range(1, top + 1, 2) if cls.timbre == "square" else range(1, top + 1)
        weights = np.array([1.0 / k for k in ks])
        weights /= np.sqrt((weights**2).sum())  # same RMS as a sine
        wave = sum(w * np.sin(k * phase) for k, w in zip(ks, weights, strict=True))
    edges = np.clip(np.minimum(tau, sound.end - t) / EDGE_RAMP, 0.0, 1.0)
    return sound.gain * _rhythm(cls.rhythm, cls.rate, tau) * edges * wave


def _rhythm(rhythm: str, rate: float, tau: np.ndarray) -> np.ndarray | float:
    """Amplitude envelope of a rhythm at times ``tau`` since the sound's onset."""
    if rhythm == "steady":
        return 1.0
    if rhythm == "tremolo":
        return 0.6 + 0.4 * np.cos(2 * np.pi * rate * tau)
    cycle = np.mod(tau, 1.0 / rate)
    if rhythm == "beeps":
        return _gate(cycle, 0.5 / rate)
    if rhythm == "pips":
        return _gate(cycle, PIP_LENGTH)
    if rhythm == "double":
        return _gate(cycle, PIP_LENGTH) + _gate(cycle - DOUBLE_GAP, PIP_LENGTH)
    raise ValueError(f"unknown rhythm {rhythm!r}")


def _gate(time: np.ndarray, length: float) -> np.ndarray:
    """1 inside ``[0, length)`` with GATE_RAMP fades, 0 elsewhere."""
    return np.clip(np.minimum(time, length - time) / GATE_RAMP, 0.0, 1.0)


def _coloured_noise(
    key: tuple[int, ...], exponent: float, n0: int, n1: int, sample_rate: int
) -> np.ndarray:
    """Unit-RMS noise with power ~ 1/f**exponent for samples ``[n0, n1)``.

    Block ``j`` covers samples ``[(j-1)L, (j+1)L)`` under a sine window; the squared windows of two
    neighbours sum to one, so the variance is constant and blocks are independent of each other.
    """
    size = 2 * NOISE_BLOCK
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    shaping = np.maximum(freqs, 20.0) ** (-exponent / 2)
    shaping[0] = 0.0
    shaping /= np.sqrt((2 * np.sum(shaping**2) - shaping[-1] ** 2) / size)  # unit output variance
    window = np.sin(np.pi * (np.arange(size) + 0.5) / size)
    out = np.zeros(n1 - n0)
    for j in range(n0 // NOISE_BLOCK, (n1 - 1) // NOISE_BLOCK + 2):
        white = np.random.default_rng((*key, _NOISE, j)).standard_normal(size)
        block = np.fft.irfft(np.fft.rfft(white) * shaping, size) * window
        lo = (j - 1) * NOISE_BLOCK
        a, b = max(lo, n0), min(lo + size, n1)
        if b > a:
            out[a - n0 : b - n0] += block[a - lo : b - lo]
    return out


def _add_clicks(mix: np.ndarray, scenario: Scenario, n0: int, sample_rate: int) -> None:
    """Add the clip's clicks (decaying noise bursts) that fall into ``mix`` (which starts at n0)."""
    length = round(CLICK_LENGTH * sample_rate)
    decay = np.exp(-np.arange(length) / (CLICK_DECAY * sample_rate))
    for i, (time, amplitude) in enumerate(scenario.noise.clicks):
        lo = round(time * sample_rate)
        a, b = max(lo, n0), min(lo + length, n0 + len(mix))
        if b > a:
            burst = np.random.default_rng((*scenario.key, _CLICK, i)).uniform(-1, 1, length)
            mix[a - n0 : b - n0] += amplitude * (burst * decay)[a - lo : b - lo]
