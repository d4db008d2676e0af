"""The step graph: LoCo run on a stream a few steps at a time, each step's work done once.

Every layer of a streamable LoCo (local attention, LCC, CDP, convolutions; no absolute
positions) sees a bounded neighbourhood: ``a`` inputs to the left, ``b`` to the right. When
``hop`` new steps arrive, only the outputs within reach of them change, and only those are
computed again. Each stage keeps a short buffer of its *input*: the settled values it needs as
left context, then the values that changed in this call; the stage runs on that buffer alone and
its last outputs are the next stage's changed values. Values older than the changed zone never
change again, so after the stream's last step every point holds exactly what one run of the
network over the whole clip gives it (tests/test_step_graph.py). See docs/step_graph.md.

    new steps (1, hop, D) ─► standardise ─► encoders ─► LCC ─► level 0: CDP ─► heads
                                                                   │ Down
                                                                   ▼
                                                            level 1: CDP ─► heads  ...

Level ``l`` (stride ``s = 2^l``) has a point every ``s`` steps, aligned to the stream's step 0. A
call adds ``hop / s`` points to a level with ``s <= hop``; a level with ``s > hop`` gains one point
in some calls and none in others, which the caller says with ``advance[l]``. ``odd[l]`` says
whether the newest point of level ``l - 1`` has an odd index (the stride-2 convolution of ``Down``
then has all its inputs; otherwise its right input is in the future, i.e. padding). Both come
from `step_flags`. Shapes are static: the graph exports as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..step_plan import plan_steps
from .loco import LoCo


def _shift(buffer: torch.Tensor, fresh: torch.Tensor, shift: int | torch.Tensor) -> torch.Tensor:
    """``buffer`` (B, L, ...) moved ``shift`` rows on (0 or 1 when a tensor) with its last
    ``len(fresh)`` rows replaced by ``fresh``."""
    keep = buffer.shape[1] - fresh.shape[1]
    if isinstance(shift, int):
        return torch.cat([buffer[:, shift : shift + keep], fresh], dim=1)
    settled = torch.where(shift > 0.5, buffer[:, 1 : 1 + keep], buffer[:, :keep])
    return torch.cat([settled, fresh], dim=1)


def _shift_each(
    buffers: Iterator[torch.Tensor], streams: list[torch.Tensor], shift: int | torch.Tensor
) -> list[torch.Tensor]:
    """`_shift` of the next buffer of ``buffers`` by each stream's changed rows, in order."""
    return [_shift(next(buffers), stream, shift) for stream in streams]


def _born(
    buffer: torch.Tensor, valid: torch.Tensor, stride: int, shift: int | torch.Tensor
) -> torch.Tensor:
    """A level's validity buffer (1, V) after a call whose steps' validity is ``valid``
    (1, hop): its new points sit on every ``stride``-th step from the call's first."""
    if isinstance(shift, int):
        return torch.cat([buffer[:, shift:], valid[:, ::stride]], dim=1)
    moved = torch.cat([buffer[:, 1:], valid[:, :1]], dim=1)
    return torch.where(shift > 0.5, moved, buffer)


class StepGraph(nn.Module):
    """``(visual, audio, valid, advance, odd, *state) -> (scores, distances, *state)``.

    Inputs: the newest ``hop`` steps' features ``visual`` (1, hop, Dv) and ``audio`` (1, hop, Da),
    ``valid`` (1, hop) (0 for padding after a stream's last step), ``advance`` and ``odd`` (L,)
    from `step_flags`, and the state from the previous call (`initial_state` at the start).
    Outputs: for every level, its ``head_points`` newest points (oldest first, levels one after
    the other): ``scores`` (1, N, C), sigmoid, 0 at invalid points, and ``distances`` (1, N, 2)
    (or (1, N, C, 2)) from the point's own step back to the start and on to the end, in steps.
    """

    def __init__(self, model: LoCo, hop: int) -> None:
        super().__init__()
        self.model = model
        self.plan = plan_steps(model.config, hop)
        c = model.config
        self.num_streams = int(c.uses_audio) + int(c.uses_visual)
        self.state_shapes = self._state_shapes()

    def _state_shapes(self) -> list[tuple[int, ...]]:
        c, plan = self.model.config, self.plan
        dims = ([c.audio_dim] if c.uses_audio else []) + ([c.visual_dim] if c.uses_visual else [])
        shapes = [(1, plan.feature_buffer, dim) for dim in dims]
        if c.uses_lcc:
            shapes += [(1, plan.lcc_buffer, c.embed_dim)] * 2
        for level in plan.levels:
            shapes.append((1, level.valid_buffer))
            shapes += [(1, level.cdp_buffer, c.embed_dim)] * self.num_streams
            shapes += [(1, level.out_buffer, c.embed_dim)] * self.num_streams
        return shapes

    def initial_state(self) -> list[torch.Tensor]:
        """The state before a stream's first step: zeros, every point invalid."""
        return [torch.zeros(shape) for shape in self.state_shapes]

    def forward(
        self,
        visual: torch.Tensor,
        audio: torch.Tensor,
        valid: torch.Tensor,
        advance: torch.Tensor,
        odd: torch.Tensor,
        *state: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        model, plan, c = self.model, self.plan, self.model.config
        old = iter(state)  # the buffers in the order of `state_shapes`, taken as they are used
        new_state: list[torch.Tensor] = []
        hop = plan.hop

        # --- level-0 validity: hop new steps (its buffer comes later in the order)
        valid_0 = _born(state[self._level_0_valid], valid, 1, hop)  # (1, V0)

        # --- standardised features -> encoders: `encoder_fresh` changed steps per stream
        inputs = []
        if c.uses_audio:
            inputs.append((audio, model.audio_standardiser, model.audio_encoder))
        if c.uses_visual:
            inputs.append((visual, model.visual_standardiser, model.visual_encoder))
        encoded = []
        mask = valid_0[:, -plan.feature_buffer :]
        for features, standardiser, encoder in inputs:
            if standardiser is not None:
                features = standardiser(features, valid)  # (1, hop, D_in)
            buffer = _shift(next(old), features, hop)  # (1, feature_buffer, D_in)
            new_state.append(buffer)
            encoded.append(encoder(buffer, mask, plan.encoder_fresh))  # (1, U_enc, D)

        # --- LCC over the encoders' newest outputs
        if c.uses_lcc:
            buffers = _shift_each(old, encoded, hop)  # (1, lcc_buffer, D) each
            new_state += buffers
            mask = valid_0[:, -plan.lcc_buffer :]
            audio_x, visual_x, _ = model.lcc(buffers[0], buffers[1], mask)
            fresh = plan.levels[0].fresh
            encoded = [audio_x[:, -fresh:], visual_x[:, -fresh:]]

        # --- the pyramid, level by level; heads on each level's changed points
        head_inputs: list[torch.Tensor] = []  # per level (1, span, D * S)
        head_masks: list[torch.Tensor] = []  # per level (1, span)
        streams = encoded  # per stream: (1, fresh_l, D), the level's changed CDP inputs
        previous_out: list[torch.Tensor] = []
        previous_valid = valid_0
        for index, level in enumerate(plan.levels):
            static = level.stride <= hop  # a fixed number of new points per call
            shift: int | torch.Tensor = hop // level.stride if static else advance[index]
            validity = next(old)  # level 0's was read first, for the encoders' masks
            level_valid = _born(validity, valid, level.stride, shift) if index else valid_0
            if index:
                streams = self._down(index, previous_out, previous_valid, odd[index])
            new_state.append(level_valid)
            blocks = model.pyramid.blocks[index]
            cdp_in = _shift_each(old, streams, shift)  # (1, cdp_buffer, D) each
            new_state += cdp_in
            mask = level_valid[:, -level.cdp_buffer :]
            contexts = cdp_in[::-1]
            outs = [
                block(x, context, mask, level.out_fresh)
                for block, x, context in zip(blocks, cdp_in, contexts, strict=True)
            ]
            cdp_out = _shift_each(old, outs, shift)  # (1, out_buffer, D) each
            new_state += cdp_out
            span = level.head_points + c.num_head_layers
            head_inputs.append(torch.cat([x[:, -span:] for x in cdp_out], dim=-1))
            head_masks.append(level_valid[:, -span:])
            previous_out, previous_valid = cdp_out, level_valid
        scores, distances = self._heads(head_inputs, head_masks)
        return (scores, distances, *new_state)

    @property
    def _level_0_valid(self) -> int:
        """Position of level 0's validity buffer in the state: after the features' and LCC's."""
        return self.num_streams + (2 if self.model.config.uses_lcc else 0)

    def _down(
        self,
        level: int,
        below: list[torch.Tensor],
        below_valid: torch.Tensor,
        odd: torch.Tensor,
    ) -> list[torch.Tensor]:
        """The changed CDP inputs of ``level`` from the kept CDP outputs of the level below.

        Point p reads points 2p-1, 2p, 2p+1 below; the slice handed to ``Downsample`` starts on an
        even point two before the first changed one, whose output (zero-padded left) is dropped.
        When the newest point below is even, its right neighbour is in the future: a zero.
        """
        fresh = self.plan.levels[level].fresh
        length = 2 * fresh + 2
        valid_odd = below_valid[:, -length:]
        valid_even = torch.cat([below_valid[:, -(length - 1) :], below_valid[:, :1] * 0], dim=1)
        mask = torch.where(odd > 0.5, valid_odd, valid_even)  # (1, 2 fresh + 2)
        outputs = []
        for stream, down in zip(below, self.model.pyramid.downsamples[level - 1], strict=True):
            padded = torch.cat([stream[:, -(length - 1) :], stream[:, :1] * 0], dim=1)
            x = torch.where(odd > 0.5, stream[:, -length:], padded)  # (1, 2 fresh + 2, D)
            outputs.append(down(x, mask)[0][:, 1:])  # (1, fresh, D)
        return outputs

    def _heads(
        self, features: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (1, N, C) and distances in steps (1, N, 2 | C, 2) of every level's changed
        points, from each level's newest CDP outputs ``features`` (1, span_l, D * S).

        The heads are shared by the levels, so the levels run as one sequence, each followed by
        a padding row: the masked convolutions see zeros there, as at a sequence's end.
        """
        model, plan = self.model, self.plan
        gap = features[0][:, :1] * 0
        rows = torch.cat([part for x in features for part in (x, gap)], dim=1)  # (1, sum, D*S)
        mask = torch.cat([part for m in masks for part in (m, m[:, :1] * 0)], dim=1)
        logits = model.classifier.tower(rows, mask)  # (1, sum, C)
        offsets = model.regressor.tower(rows, mask)  # (1, sum, 2 K)
        scores, distances, end = [], [], 0
        for index, (level, x) in enumerate(zip(plan.levels, features, strict=True)):
            end += x.shape[1]
            points = slice(end - level.head_points, end)
            end += 1  # the padding row
            scores.append(torch.sigmoid(logits[:, points]) * mask[:, points, None])
            offset = torch.relu(model.regressor.scales[index] * offsets[:, points])
            distances.append(offset * float(level.stride))
        distances_all = torch.cat(distances, dim=1)
        if model.regressor.num_classes:
            distances_all = distances_all.view(1, plan.points, model.regressor.num_classes, 2)
        return torch.cat(scores, dim=1), distances_all
