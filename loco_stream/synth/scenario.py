"""Sampling a clip's timeline: events, unimodal distractors, clutter and noise settings.

A clip is described completely by a :class:`Scenario`; rendering is a pure function of it. Per class
the sampler keeps the intervals where the class is visible and where it is audible; an audio-visual
event is their intersection. Intervals of one class are kept at least ``MARGIN`` seconds apart from
each other (in either modality) unless they belong to the same event, so every event is exactly the
intersection that was planned and no accidental sliver events appear.

Statistics follow UnAV-100's: clip length 10-60 s (mean ~42 s, most 38-52 s), events
per clip 1: 41.2%, 2: 19.6%, ... more: 7.8%, event lengths heavy-tailed with a bump of events that
cover most of the clip. Each clip draws from its own ``numpy`` generator seeded by
``(seed, crc32(split), index)``, so clips are independent of rendering order and worker count.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from loco_stream.synth.classes import (
    CLASSES,
    CLUTTER_COLOURS,
    FPS,
    MOTIONS,
    NUM_CLASSES,
    SHAPES,
    confusers,
)

Interval = tuple[float, float, int]  # (start s, end s, label_id)

MIN_EVENT = 0.5  # s, shortest event (and shortest unimodal interval)
MARGIN = 0.5  # s, least gap between two unrelated intervals of the same class
MIN_DURATION, MAX_DURATION = 10.0, 60.0  # s, clip length range of UnAV-100
TYPICAL_DURATION = (45.0, 4.0)  # mean, std (s) of the typical clip; the rest are uniform
TYPICAL_SHARE = 0.78
EVENT_COUNT_PROBS = (0.412, 0.196, 0.129, 0.088, 0.058, 0.038, 0.078)  # 1..6, "more"
MORE_EVENTS = (7, 12)  # inclusive range drawn for "more"
SHORT_EVENT = (2.2, 1.0)  # median (s) and log-std of the lognormal body of event lengths
LONG_EVENT_SHARE = (0.22, 0.06)  # share of clip-covering events: single-event clips, others
WHOLE_CLIP_SHARE = 0.4  # share of clip-covering events that span exactly [0, duration]
PARTIAL_SHARE = 0.35  # share of events whose visible and audible intervals overhang differently
OVERHANG = (1.2, 0.7)  # median (s) and log-std of an overhang
REPEAT_SHARE = 0.25  # chance that a further event repeats a class already in the clip
DISTRACTOR_RATE = 0.05  # unimodal distractors per second of clip, per modality
DISTRACTOR_LENGTH = (2.5, 0.8)  # median (s) and log-std
CLUTTER_COUNT = (2, 6)  # inclusive range of clutter sprites per clip
CLICK_RATE = 0.4  # s^-1, upper bound of the click rate of a clip
PLACEMENT_TRIES = 30
DECIMALS = 4  # boundaries in 0.1 ms (clip durations are multiples of 1/FPS = 0.0625 s)


@dataclass(frozen=True)
class Sprite:
    """A shape on screen from ``start`` to ``end``: a class instance or (label_id -1) clutter."""

    label_id: int
    start: float
    end: float
    shape: str
    colour: tuple[int, int, int]
    motion: str
    radius: float  # px
    anchor: tuple[float, float]  # initial position, as fractions of the free range in x and y
    heading: float  # radians, direction of drift
    speed: float  # factor on the motion's nominal speed
    phase: float  # radians, phase of the motion's periodic part


@dataclass(frozen=True)
class Sound:
    """A class's sound from ``start`` to ``end``."""

    label_id: int
    start: float
    end: float
    gain: float  # peak amplitude
    detune: float  # factor on the class pitch
    phase: float  # radians
    seed: int  # partials of the "noise" timbre


@dataclass(frozen=True)
class Backdrop:
    """The visual background: a drifting noise texture, flicker and sensor grain."""

    colour: tuple[float, float, float]
    texture: float  # std of the texture, grey levels
    drift: tuple[float, float]  # px/s
    flicker: float  # relative amplitude of brightness flicker
    flicker_rate: float  # Hz
    grain: float  # std of per-frame noise, grey levels


@dataclass(frozen=True)
class NoiseBed:
    """The audio background: coloured noise, mains hum and clicks."""

    level: float  # RMS of the coloured noise
    exponent: float  # spectral slope: power ~ 1/f**exponent (0 white, 1 pink, 2 brown)
    hum: float  # amplitude of the mains hum (0: none)
    hum_freq: float  # Hz
    clicks: tuple[tuple[float, float], ...]  # (time s, amplitude)


@dataclass(frozen=True)
class Scenario:
    """Everything about one clip: ground truth and what the renderer needs."""

    video_id: str
    split: str
    duration: float  # s, a whole number of frames
    events: list[Interval]  # audio-visual events: visible and audible at once
    visible: list[Interval]  # every interval where a class is visible
    audible: list[Interval]  # every interval where a class is audible
    sprites: tuple[Sprite, ...]  # drawn in order: clutter first
    sounds: tuple[Sound, ...]
    backdrop: Backdrop
    noise: NoiseBed
    key: tuple[int, ...]  # entropy of the clip's random streams used while rendering

    @property
    def num_frames(self) -> int:
        return round(self.duration * FPS)


def dataset_prefix(seed: int, split: str) -> str:
    """The start of every clip id of the dataset ``(seed, split)``; the index follows it."""
    return f"synth_{split}_{seed}_"


def sample_scenario(
    seed: int, index: int, duration: float | None = None, split: str = "train"
) -> Scenario:
    """Sample clip ``index`` of the dataset ``(seed, split)``; ``duration`` overrides its length."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed} and {index}")
    key = (seed, zlib.crc32(split.encode()), index)
    rng = np.random.default_rng(key)
    if duration is None:
        duration = _clip_duration(rng)
    elif duration < 1.0:
        raise ValueError(f"duration must be at least 1 s, got {duration}")
    duration = round(duration * FPS) / FPS
    timeline = _Timeline(duration)
    event_classes = _place_events(rng, timeline)
    _place_distractors(rng, timeline, event_classes)
    visible, audible = timeline.intervals()
    sprites = tuple(_clutter(rng, duration)) + tuple(class_sprite(rng, *iv) for iv in visible)
    sounds = tuple(class_sound(rng, *iv) for iv in audible)
    return Scenario(
        video_id=f"{dataset_prefix(seed, split)}{index:05d}",
        split=split,
        duration=duration,
        events=intersect(visible, audible),
        visible=visible,
        audible=audible,
        sprites=sprites,
        sounds=sounds,
        backdrop=_backdrop(rng),
        noise=_noise_bed(rng, duration),
        key=key,
    )


def intersect(visible: list[Interval], audible: list[Interval]) -> list[Interval]:
    """Intervals where the same class is both visible and audible, sorted."""
    events = []
    for vs, ve, vk in visible:
        for as_, ae, ak in audible:
            start, end = max(vs, as_), min(ve, ae)
            if vk == ak and end > start:
                events.append((start, end, vk))
    return sorted(events)


class _Timeline:
    """Per-class visible and audible intervals, and the rule that keeps them apart."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.visible: list[Interval] = []
        self.audible: list[Interval] = []

    def fits(self, label_id: int, *new: tuple[float, float] | None) -> bool:
        taken = [(s, e) for s, e, k in self.visible + self.audible if k == label_id]
        return all(max(s - e2, s2 - e) >= MARGIN for s, e in filter(None, new) for s2, e2 in taken)

    def add(
        self, label_id: int, seen: tuple[float, float] | None, heard: tuple[float, float] | None
    ) -> None:
        if seen:
            self.visible.append((*seen, label_id))
        if heard:
            self.audible.append((*heard, label_id))

    def intervals(self) -> tuple[list[Interval], list[Interval]]:
        return sorted(self.visible), sorted(self.audible)


def _ms(t: float) -> float:
    return round(float(t), DECIMALS)


def _lognormal(rng: np.random.Generator, median_logstd: tuple[float, float]) -> float:
    median, logstd = median_logstd
    return float(rng.lognormal(np.log(median), logstd))


def _clip_duration(rng: np.random.Generator) -> float:
    if rng.random() < TYPICAL_SHARE:
        duration = rng.normal(*TYPICAL_DURATION)
    else:
        duration = rng.uniform(MIN_DURATION, MAX_DURATION)
    return float(np.clip(duration, MIN_DURATION, MAX_DURATION))


def _event_count(rng: np.random.Generator) -> int:
    probs = np.asarray(EVENT_COUNT_PROBS) / sum(
        EVENT_COUNT_PROBS
    )  # the published shares sum to 99.9%
    bin_ = int(rng.choice(len(probs), p=probs))
    if bin_ < len(EVENT_COUNT_PROBS) - 1:
        return bin_ + 1
    return int(rng.integers(MORE_EVENTS[0], MORE_EVENTS[1] + 1))


def _span(rng: np.random.Generator, length: float, duration: float) -> tuple[float, float]:
    """A random interval of ``length`` (at least MIN_EVENT) inside ``[0, duration]``."""
    length = min(max(length, MIN_EVENT + 10**-DECIMALS), duration)
    start = _ms(rng.uniform(0.0, duration - length))
    return start, min(_ms(start + length), duration)


def _overhang(
    rng: np.random.Generator, start: float, end: float, duration: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Visible and audible intervals whose intersection is exactly ``[start, end]``."""
    if rng.random() >= PARTIAL_SHARE:
        return (start, end), (start, end)
    early = max(0.0, _ms(start - _lognormal(rng, OVERHANG)))
    late = min(duration, _ms(end + _lognormal(rng, OVERHANG)))
    mode = int(rng.integers(4))
    if mode == 0:  # seen first, heard longer
        return (early, end), (start, late)
    if mode == 1:  # heard first, seen longer
        return (start, late), (early, end)
    if mode == 2:  # seen around the sound
        return (early, late), (start, end)
    return (start, end), (early, late)  # heard around the sight


def _place_events(rng: np.random.Generator, timeline: _Timeline) -> list[int]:
    """Place the clip's audio-visual events; returns their classes."""
    duration = timeline.duration
    count = _event_count(rng)
    long_share = LONG_EVENT_SHARE[0] if count == 1 else LONG_EVENT_SHARE[1]
    classes: list[int] = []
    for _ in range(count):
        covering = rng.random() < long_share
        whole = covering and rng.random() < WHOLE_CLIP_SHARE
        length = duration * rng.uniform(0.8, 1.0) if covering else _lognormal(rng, SHORT_EVENT)
        for _ in range(PLACEMENT_TRIES):
            if classes and rng.random() < REPEAT_SHARE:
                label_id = int(rng.choice(classes))
            else:
                label_id = int(rng.integers(NUM_CLASSES))
            start, end = (0.0, duration) if whole else _span(rng, length, duration)
            seen, heard = _overhang(rng, start, end, duration)
            if timeline.fits(label_id, seen, heard):
                timeline.add(label_id, seen, heard)
                classes.append(label_id)
                break
    return classes


def _place_distractors(
    rng: np.random.Generator, timeline: _Timeline, event_classes: list[int]
) -> None:
    """Visible-but-silent and audible-but-unseen intervals of event classes and their confusers."""
    duration = timeline.duration
    for modality in ("visual", "audio"):
        for _ in range(int(rng.poisson(DISTRACTOR_RATE * duration))):
            pick = rng.random()
            if pick < 0.5:
                label_id = int(rng.choice(event_classes))
            elif pick < 0.75:
                label_id = int(rng.choice(confusers(int(rng.choice(event_classes)), modality)))
            else:
                label_id = int(rng.integers(NUM_CLASSES))
            length = min(_lognormal(rng, DISTRACTOR_LENGTH), max(0.5 * duration, 1.0))
            for _ in range(PLACEMENT_TRIES):
                span = _span(rng, length, duration)
                if timeline.fits(label_id, span):
                    timeline.add(
                        label_id, *((span, None) if modality == "visual" else (None, span))
                    )
                    break


def _sprite(
    rng: np.random.Generator,
    label_id: int,
    start: float,
    end: float,
    shape: str,
    colour: tuple[int, int, int],
    motion: str,
    radius: float,
    shaded: bool = True,
) -> Sprite:
    """A sprite at a random place and pace; ``shaded``: its colour at 85-105% brightness."""
    shade = rng.uniform(0.85, 1.05) if shaded else 1.0
    return Sprite(
        label_id=label_id,
        start=start,
        end=end,
        shape=shape,
        colour=tuple(int(min(255, round(c * shade))) for c in colour),
        motion=motion,
        radius=radius,
        anchor=(float(rng.random()), float(rng.random())),
        heading=float(rng.uniform(0, 2 * np.pi)),
        speed=float(rng.uniform(0.75, 1.25)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def class_sprite(
    rng: np.random.Generator, start: float, end: float, label_id: int, shaded: bool = True
) -> Sprite:
    """The shape of class ``label_id`` over ``[start, end)``, at a random size, place and pace;
    unshaded it keeps the class colour exactly (the background set's scenes)."""
    cls = CLASSES[label_id]
    radius = float(rng.uniform(8.0, 13.0))
    return _sprite(rng, label_id, start, end, cls.shape, cls.rgb, cls.motion, radius, shaded)


def _clutter(rng: np.random.Generator, duration: float) -> list[Sprite]:
    sprites = []
    for _ in range(int(rng.integers(CLUTTER_COUNT[0], CLUTTER_COUNT[1] + 1))):
        if rng.random() < 0.5:
            start, end = 0.0, duration
        else:
            start, end = _span(rng, duration * rng.uniform(0.2, 1.0), duration)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = CLUTTER_COLOURS[int(rng.integers(len(CLUTTER_COLOURS)))]
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        radius = float(rng.uniform(5.0, 14.0))
        sprites.append(_sprite(rng, -1, start, end, shape, colour, motion, radius))
    return sprites


def class_sound(rng: np.random.Generator, start: float, end: float, label_id: int) -> Sound:
    """The tone of class ``label_id`` over ``[start, end)``, with a random gain and detune."""
    return Sound(
        label_id=label_id,
        start=start,
        end=end,
        gain=float(rng.uniform(0.15, 0.35)),
        detune=float(rng.uniform(0.99, 1.01)),
        phase=float(rng.uniform(0, 2 * np.pi)),
        seed=int(rng.integers(2**31)),
    )


def _backdrop(rng: np.random.Generator) -> Backdrop:
    grey = rng.uniform(20.0, 60.0)
    speed, heading = rng.uniform(0.0, 6.0), rng.uniform(0, 2 * np.pi)
    return Backdrop(
        colour=tuple(float(grey + rng.uniform(-8.0, 8.0)) for _ in range(3)),
        texture=float(rng.uniform(6.0, 20.0)),
        drift=(float(speed * np.cos(heading)), float(speed * np.sin(heading))),
        flicker=float(rng.uniform(0.0, 0.06)),
        flicker_rate=float(rng.uniform(0.2, 2.0)),
        grain=float(rng.uniform(1.5, 5.0)),
    )


def _noise_bed(rng: np.random.Generator, duration: float) -> NoiseBed:
    count = int(rng.poisson(rng.uniform(0.0, CLICK_RATE) * duration))
    times = np.sort(rng.uniform(0.0, duration, count))
    return NoiseBed(
        level=float(rng.uniform(0.005, 0.04)),
        exponent=float(rng.uniform(0.0, 2.0)),
        hum=float(rng.uniform(0.005, 0.03)) if rng.random() < 0.5 else 0.0,
        hum_freq=float(rng.choice([50.0, 60.0])),
        clicks=tuple((_ms(t), float(rng.uniform(0.05, 0.4))) for t in times),
    )
