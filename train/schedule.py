"""How long LoCo trains, and when it stops: a schedule sized to the data.

A fixed epoch count trains a 160-clip set for 400 optimizer steps and a 10,000-clip set for
25,000: the first stops while validation is still climbing (docs/training.md measures it). Sized
here: ``STEPS_PER_SQRT_CLIP * sqrt(clips)`` steps, within ``[MIN_STEPS, MAX_STEPS]`` (240 clips:
about 3,100 steps; UnAV-100's 7,000 train videos: about 16,700, close to its reference 45 epochs at
batch 16), rounded up to whole epochs. Early stopping ends the run once ``train.patience``
validations in a row have fallen more than ``train.selection_tolerance`` below the best avg mAP.
A validation within that tolerance of the best keeps its checkpoint (the later, longer-trained
one) and restarts the count: on a validation split of a few dozen clips, avg mAP wanders by a
point or two once it levels off, and the single highest of those wanderings came early and tested
worse in docs/training.md's runs. The checkpoint kept last is what ships.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loco_stream.config import TrainConfig

STEPS_PER_SQRT_CLIP = 200
MIN_STEPS, MAX_STEPS = 1_000, 30_000
MAX_WARMUP_SHARE = 0.1  # warm-up never takes more than this share of the run
EMA_WARMUP = 10  # the EMA's decay grows as (1 + t) / (EMA_WARMUP + t) up to train.ema_decay


@dataclass(frozen=True)
class Schedule:
    """The run's length in epochs and optimizer steps, its warm-up and validation cadence."""

    epochs: int
    iterations_per_epoch: int
    warmup_iterations: int
    sized_to_data: bool  # neither train.steps nor train.epochs was given

    @property
    def total_iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch


def sized_steps(clips: int) -> int:
    """Optimizer steps for a train split of ``clips`` clips."""
    return int(min(max(STEPS_PER_SQRT_CLIP * math.sqrt(clips), MIN_STEPS), MAX_STEPS))


def plan(config: TrainConfig, clips: int, iterations_per_epoch: int) -> Schedule:
    """``train.epochs``, else ``train.steps``, else ``sized_steps``, as whole epochs."""
    iterations_per_epoch = max(iterations_per_epoch, 1)
    if config.epochs is not None:
        epochs = config.epochs
    elif config.steps is not None:
        epochs = math.ceil(config.steps / iterations_per_epoch)
    else:
        epochs = math.ceil(sized_steps(clips) / iterations_per_epoch)
    total = epochs * iterations_per_epoch
    warmup = min(config.warmup_epochs * iterations_per_epoch, int(MAX_WARMUP_SHARE * total))
    sized = config.steps is None and config.epochs is None
    return Schedule(epochs, iterations_per_epoch, max(warmup, 1), sized)


def lr_factor(iteration: int, warmup: int, total: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup`` iterations, then cosine decay to 0."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_decay(iteration: int, decay: float) -> float:
    """The EMA's decay at ``iteration``: short at first, so that a short run's EMA is not still
    mostly its random initial weights (0.995 ** 400 = 13% of them after 400 steps)."""
    return min(decay, (1 + iteration) / (EMA_WARMUP + iteration))


class EarlyStopping:
    """Counts validations since the last one within ``tolerance`` of the best; ``should_stop``
    after ``patience`` of them."""

    def __init__(
        self, patience: int, tolerance: float = 0.0, best: float = -1.0, since_best: int = 0
    ) -> None:
        self.patience, self.tolerance = patience, tolerance
        self.best, self.since_best = best, since_best

    def update(self, score: float) -> bool:
        """Record a validation score; True when its checkpoint is to be kept: better than the
        best so far, or within a (non-zero) ``tolerance`` of it: a later one as good."""
        if score > self.best or (self.tolerance > 0 and score >= self.best - self.tolerance):
            self.best, self.since_best = max(self.best, score), 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience
