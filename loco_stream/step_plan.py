"""The step graph's plan: how many steps and points each of its buffers keeps (no torch here).

A streamable LoCo's layers each reach a bounded number of inputs to either side, so when ``hop``
new steps arrive only outputs within that reach change. `plan_steps` adds the reaches up, layer
by layer, into the length of every buffer of `loco_stream.model.streaming.StepGraph`; the runtime
reads the same plan to place the graph's output rows on the stream (docs/step_graph.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig


class NotStreamable(ValueError):
    """A model that cannot run as a step graph (absolute positions or dense attention)."""


def check_streamable(config: ModelConfig) -> None:
    """Raise `NotStreamable` naming why the network of ``config`` has no step graph."""
    if config.position_encoding != "none":
        raise NotStreamable(
            f"model.position_encoding is {config.position_encoding!r}: a network tied to its "
            "window's start has no step graph; train with model.position_encoding=none"
        )
    if not config.uses_cdp:
        raise NotStreamable(
            f"variant {config.variant!r} attends densely across the whole window; "
            "only local variants (loco, no_lcc, audio_only, visual_only) stream step by step"
        )


@dataclass(frozen=True)
class LevelPlan:
    """Sizes of one pyramid level's buffers, in points of the level."""

    stride: int
    fresh: int  # points whose CDP input changes in a call (new ones included)
    cdp_buffer: int  # CDP input kept: fresh + radius either side
    out_fresh: int  # CDP outputs that change
    out_buffer: int  # CDP outputs kept (heads' context and the next level's Down input)
    head_points: int  # points whose scores and offsets change: the graph's output rows
    valid_buffer: int  # validity of the newest points (the longest buffer of the level)


@dataclass(frozen=True)
class StepPlan:
    """Every buffer's length for a model and a hop; `plan_steps` derives it."""

    hop: int
    feature_buffer: int  # standardised input steps kept per modality
    encoder_fresh: int  # encoder outputs that change per call
    lcc_buffer: int  # encoder outputs kept for LCC (0 without LCC)
    levels: tuple[LevelPlan, ...]

    @property
    def points(self) -> int:
        """Rows of the graph's outputs: the changed points of every level."""
        return sum(level.head_points for level in self.levels)


def plan_steps(c: ModelConfig, hop: int) -> StepPlan:
    """Buffer lengths from the layers' reaches; ``hop`` a power of two (steps per call)."""
    check_streamable(c)
    if hop < 1 or hop & (hop - 1):
        raise ValueError(f"the step graph's hop must be a power of two (steps), got {hop}")
    encoder_reach = c.num_proj_layers + c.num_encoder_blocks * c.encoder_radius
    feature_buffer = hop + 2 * encoder_reach
    encoder_fresh = hop + encoder_reach
    fresh, lcc_buffer = encoder_fresh, 0
    if c.uses_lcc:
        lcc_buffer = encoder_fresh + 2 * c.lcc_radius
        fresh = encoder_fresh + c.lcc_radius
    head_reach = c.num_head_layers
    levels = []
    for level in range(c.num_levels):
        if level > 0:
            fresh = levels[-1].out_fresh // 2 + 1  # Down: point p reads 2p-1, 2p, 2p+1 below
        out_fresh = fresh + c.cdp_radius
        next_fresh = out_fresh // 2 + 1
        out_buffer = max(out_fresh + 2 * head_reach, 2 * next_fresh + 2)
        cdp_buffer = fresh + 2 * c.cdp_radius
        valid = max(cdp_buffer, out_buffer)
        if level == 0:
            valid = max(valid, feature_buffer, lcc_buffer)
        levels.append(
            LevelPlan(
                2**level,
                fresh,
                cdp_buffer,
                out_fresh,
                out_buffer,
                out_fresh + head_reach,
                valid,
            )
        )
    return StepPlan(hop, feature_buffer, encoder_fresh, lcc_buffer, tuple(levels))


def step_flags(plan: StepPlan, steps_after: int) -> tuple[list[float], list[float]]:
    """``advance`` and ``odd`` (one 0/1 per level) for the call that ends at ``steps_after``
    steps of stream (a multiple of the hop)."""
    advance, odd = [], []
    for level in plan.levels:
        newest = -(-steps_after // level.stride) - 1
        before = -(-(steps_after - plan.hop) // level.stride) - 1
        advance.append(float(newest - before))
        below = -(-steps_after // (level.stride // 2)) - 1 if level.stride > 1 else 0
        odd.append(float(below % 2))
    return advance, odd


def newest_points(plan: StepPlan, steps_after: int) -> list[int]:
    """Index of each level's newest point after ``steps_after`` steps (-1: none yet)."""
    return [-(-steps_after // level.stride) - 1 for level in plan.levels]
