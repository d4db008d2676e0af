"""The features of the last T steps, ready to be handed to the window graph.

Each step's features are computed once (by the extractors) and written into a slot of a
preallocated ring; a window is read out in time order, left-aligned with a padding mask while
fewer than T steps exist. Memory is fixed at construction: T rows per modality.
"""

from __future__ import annotations

import numpy as np


class FeatureRing:
    """A bounded ring of the last ``window`` steps' (visual, audio) features and their validity."""

    def __init__(self, window: int, visual_dim: int, audio_dim: int, first_step: int = 0) -> None:
        self.window = window
        self._origin = first_step  # the first step pushed (a restarted stream's is later than 0)
        self._visual = np.zeros((window, visual_dim), np.float32)  # (T, Dv), a slot per step
        self._audio = np.zeros((window, audio_dim), np.float32)  # (T, Da)
        self._valid = np.zeros(window, np.float32)  # (T,) 1 where the slot holds a step
        self.next_step = first_step  # index of the step the next push must carry

    @property
    def first_step(self) -> int:
        """Index of the oldest step held (the first step of the window)."""
        return max(self._origin, self.next_step - self.window)

    @property
    def size(self) -> int:
        """Steps held: min(steps pushed, T)."""
        return self.next_step - self.first_step

    def push(self, index: int, visual: np.ndarray, audio: np.ndarray) -> None:
        """Store step ``index``'s visual (Dv,) and audio (Da,) features; steps come in order."""
        if index != self.next_step:
            raise ValueError(f"step {index} pushed, but step {self.next_step} was expected next")
        slot = (index - self._origin) % self.window
        self._visual[slot] = visual
        self._audio[slot] = audio
        self._valid[slot] = 1.0
        self.next_step += 1

    def window_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """visual (1, T, Dv), audio (1, T, Da), mask (1, T): the held steps oldest first, then
        padding (mask 0) while fewer than T steps were pushed. Row 0 is step ``first_step``."""
        pushed = self.next_step - self._origin
        if pushed <= self.window:  # not wrapped yet: slots are already in time order
            order = np.arange(self.window)
        else:
            order = (np.arange(self.window) + pushed) % self.window
        return self._visual[order][None], self._audio[order][None], self._valid[order][None]

    def rows(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """visual (K, Dv) and audio (K, Da) of steps ``first``..``stop - 1``, still held."""
        if not self.first_step <= first <= stop <= self.next_step:
            raise ValueError(
                f"steps {first}..{stop - 1} are not all held (held: "
                f"{self.first_step}..{self.next_step - 1})"
            )
        slots = (np.arange(first, stop) - self._origin) % self.window
        return self._visual[slots], self._audio[slots]
