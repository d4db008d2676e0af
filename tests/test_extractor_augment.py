"""The trainable visual extractor's augmentation: each step is mirrored and moved as a whole, so
what it shows and how it moves between its frames stay the same."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the extractors train with the train extra")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from train.extractors import shift_and_mirror  # noqa: E402


def matching_move(original: torch.Tensor, moved: torch.Tensor) -> tuple[bool, int, int] | None:
    """(mirrored, dy, dx) that turn one step's frames (F, H, W, 3) into ``moved``, if any: the
    places whose colour is that of ``moved``'s top-left pixel are the candidates, checked whole."""
    height, width = original.shape[1:3]
    for mirrored in (False, True):
        source = original.flip(2) if mirrored else original
        found = (source[0] == moved[0, 0, 0]).all(dim=-1).nonzero().tolist()
        for y, x in found:
            dy, dx = (-y) % height, (-x) % width  # source[y, x] went to (0, 0)
            if torch.equal(source.roll((dy, dx), dims=(1, 2)), moved):
                dy = dy - height if dy > height // 2 else dy
                dx = dx - width if dx > width // 2 else dx
                return mirrored, dy, dx
    return None


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 6),
    frames=st.integers(1, 4),
    height=st.integers(8, 24),
    width=st.integers(8, 24),
    seed=st.integers(0, 2**31 - 1),
)
def test_each_step_is_one_mirror_and_move_of_all_its_frames(batch, frames, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randint(0, 256, (batch, frames, height, width, 3), dtype=torch.uint8)
    moved = shift_and_mirror(steps, generator)
    assert moved.shape == steps.shape and moved.dtype == torch.uint8
    for original, result in zip(steps, moved, strict=True):
        move = matching_move(original, result)
        assert move is not None
        _, dy, dx = move
        assert max(abs(dy), abs(dx)) <= max(height, width) // 8


def test_steps_are_moved_differently_and_both_ways_round():
    generator = torch.Generator().manual_seed(0)
    steps = torch.randint(0, 256, (64, 2, 32, 32, 3), dtype=torch.uint8)
    moves = [
        matching_move(a, b) for a, b in zip(steps, shift_and_mirror(steps, generator), strict=True)
    ]
    assert {mirrored for mirrored, _, _ in moves} == {False, True}
    assert len({(dy, dx) for _, dy, dx in moves}) > 10  # per step, not one move for the batch
    assert max(max(abs(dy), abs(dx)) for _, dy, dx in moves) == 4  # up to an eighth of 32
