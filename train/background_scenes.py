"""Synthetic scenes without an audio-visual event: class shapes that are never heard, class tones
that are never seen, over the benchmark's backdrop, clutter and noise bed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from loco_stream.synth.classes import NUM_CLASSES
from loco_stream.synth.scenario import (
    Interval,
    Scenario,
    class_sound,
    class_sprite,
    sample_scenario,
)


def synthetic_scene(
    seed: int, split: str, index: int, seconds: float, visible: bool, audible: bool
) -> Scenario:
    """A synthetic scene without any audio-visual event: its backdrop, noise bed and clutter, and
    class shapes (when ``visible``) and class tones (when ``audible``) of disjoint class sets."""
    base = sample_scenario(seed, index, max(seconds, 1.0), split=f"background-{split}")
    rng = np.random.default_rng((*base.key, 99))
    classes = rng.permutation(NUM_CLASSES)
    half = int(rng.integers(4, NUM_CLASSES - 4))
    seen_classes, heard_classes = classes[:half], classes[half:]  # disjoint: no class is both
    seen = _unimodal(rng, seen_classes, base.duration) if visible else []
    heard = _unimodal(rng, heard_classes, base.duration) if audible else []
    clutter = tuple(s for s in base.sprites if s.label_id < 0) if visible else ()
    return replace(
        base,
        events=[],
        visible=seen,
        audible=heard,
        sprites=clutter + tuple(class_sprite(rng, *iv, shaded=False) for iv in seen),
        sounds=tuple(class_sound(rng, *iv) for iv in heard),
    )


def _unimodal(rng: np.random.Generator, classes: np.ndarray, duration: float) -> list[Interval]:
    """1-6 s intervals of the given classes, about one every 8 s (at least one)."""
    out = []
    for _ in range(max(1, int(rng.poisson(duration / 8.0)))):
        length = min(float(rng.uniform(1.0, 6.0)), duration)
        start = round(float(rng.uniform(0.0, duration - length)), 4)
        out.append((start, round(start + length, 4), int(rng.choice(classes))))
    return sorted(out)


def scene_record(scene: Scenario) -> dict:
    """What background.json keeps of a synthetic scene: its key and class intervals."""
    return {
        "video_id": scene.video_id,
        "visible": [list(iv) for iv in scene.visible],
        "audible": [list(iv) for iv in scene.audible],
        "shown_classes": sorted({s.label_id for s in scene.sprites if s.label_id >= 0}),
        "sounded_classes": sorted({s.label_id for s in scene.sounds}),
    }
