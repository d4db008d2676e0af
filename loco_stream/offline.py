"""Offline detection over a whole clip's features with a fixed-length window graph.

A clip of L steps runs as one padded window when L <= T, else as windows of T steps every T/2
steps, the last one ending at the clip's end, so every step is seen with context on both sides
and memory stays bounded by one window. Candidates of all windows go through one soft-NMS.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import DecodeConfig
from .postprocess import Segments, candidates, soft_nms

# (visual (1,T,Dv), audio (1,T,Da), mask (1,T)) -> (scores (1,N,C), segments (1,N,2|C,2)) in steps
WindowRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def window_starts(length: int, window: int) -> list[int]:
    """First step of each window covering ``length`` steps with half-window hops."""
    if length <= window:
        return [0]
    hop = window // 2
    starts = list(range(0, length - window, hop))
    return starts + [length - window]


def detect_features(
    run_window: WindowRunner,
    visual: np.ndarray,
    audio: np.ndarray,
    window: int,
    decode: DecodeConfig,
) -> Segments:
    """visual (L, Dv) and audio (L, Da) of one clip -> final segments in clip steps."""
    length = min(len(visual), len(audio))
    parts = []
    for start in window_starts(length, window):
        stop = min(start + window, length)
        visual_window = np.zeros((1, window, visual.shape[1]), dtype=np.float32)
        audio_window = np.zeros((1, window, audio.shape[1]), dtype=np.float32)
        mask = np.zeros((1, window), dtype=np.float32)
        visual_window[0, : stop - start] = visual[start:stop]
        audio_window[0, : stop - start] = audio[start:stop]
        mask[0, : stop - start] = 1.0
        scores, segments = run_window(visual_window, audio_window, mask)
        found = candidates(scores[0], segments[0], decode)
        found.start += start
        found.end += start
        parts.append(found)
    merged = Segments.concat(parts)
    return soft_nms(merged, decode.nms_sigma, decode.score_threshold, decode.max_segments)
