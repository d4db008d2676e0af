"""The plan of a background clip: its split, length, format and kinds of picture and sound.

Formats cycle so that a short stretch of clips holds every frame rate, size, sample rate and
channel count; every pairing of a picture kind with a sound kind comes up in turn.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "heldout")
MIN_CLIP, MAX_CLIP = 10.0, 40.0  # s
FRAME_RATES = (15, 25, 30)
SIZES = ((320, 240), (640, 360))  # (width, height)
SAMPLE_RATES = (16000, 44100, 48000)
CHANNELS = (1, 2)
PICTURES = ("video", "kenburns", "photo", "grey", "synth")
SOUNDS = ("speech", "music", "theme", "noise", "silence", "synth")


@dataclass
class ClipPlan:
    """Everything needed to render one clip; the JSON record is this plus its sources."""

    file: str
    split: str
    index: int
    seconds: float
    fps: int
    width: int
    height: int
    sample_rate: int
    channels: int
    picture: str
    sound: list[str]
    sources: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)  # kinds of room noise in the mix
    synthetic: dict | None = None  # the synthetic scene: key, visible and audible intervals


def plan_split(split: str, minutes: float, seed: int) -> list[ClipPlan]:
    """Clip lengths, formats and content kinds of a split, about ``minutes`` long in total."""
    rng = np.random.default_rng((seed, zlib.crc32(split.encode()), 0))
    lengths = _lengths(rng, minutes * 60.0)
    combos = [(p, s) for p in PICTURES for s in SOUNDS if (p, s) != ("grey", "silence")]
    rng.shuffle(combos)
    combos.insert(0, ("grey", "silence"))  # the quietest input of all comes first
    offsets = rng.integers(0, 6, 4)  # formats cycle: any 3 clips in a row hold every frame rate
    # and sample rate, any 2 both sizes, any 4 both channel counts; 9 clips hold every pairing
    plans = []
    for i, length in enumerate(lengths):
        fps = FRAME_RATES[(i + offsets[0]) % len(FRAME_RATES)]
        width, height = SIZES[(i + offsets[1]) % len(SIZES)]
        picture, sound = combos[i % len(combos)]
        plans.append(
            ClipPlan(
                file=f"{split}/bg_{split}_{i:04d}.mp4",
                split=split,
                index=i,
                seconds=round(round(length * fps) / fps, 4),  # whole frames
                fps=fps,
                width=width,
                height=height,
                sample_rate=SAMPLE_RATES[(i + i // 3 + offsets[2]) % len(SAMPLE_RATES)],
                channels=CHANNELS[(i // 2 + offsets[3]) % len(CHANNELS)],
                picture=picture,
                sound=[sound],
            )
        )
    return plans


def _lengths(rng: np.random.Generator, total: float) -> list[float]:
    """Clip lengths in [MIN_CLIP, MAX_CLIP] (tenths of a second) adding up to about ``total``."""
    lengths, left = [], total
    while left > 0.05:
        if left <= MAX_CLIP:
            length = max(left, MIN_CLIP)
        else:
            length = rng.uniform(MIN_CLIP, min(MAX_CLIP, left - MIN_CLIP))
        length = round(length, 1)
        lengths.append(length)
        left -= length
    return lengths
