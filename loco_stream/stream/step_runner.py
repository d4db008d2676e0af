"""One stream through a model's step graph: the newest steps in, the newest points kept.

The step graph (``loco_step.onnx``, docs/step_graph.md) is called with ``step_hop`` steps at a
time and its state from the call before; it returns the scores and distances of the points those
steps changed. `StepRunner` feeds it, keeps its state, and keeps each level's newest points for
the last ``window`` steps in rings, so the stream decodes them exactly as it decodes a window
graph's outputs: ``window_outputs`` gives scores (N, C), segments (N, 2) and the points'
positions (N,) in steps from a first step, every point with the context of the whole stream so
far (no window edge).

Points sit on the stream's own grid: level ``l``'s point ``p`` is step ``origin + p * 2^l``.
"""

from __future__ import annotations

import numpy as np

from ..bundle import WindowInfo
from ..runtime import Backend
from ..step_plan import newest_points, plan_steps, step_flags

STATE_PREFIX = "state_"


class StepRunner:
    """Runs ``graph`` (a model's step graph) over one stream that begins at step ``origin``,
    keeping the points of the last ``keep`` steps (default: the model's window)."""

    def __init__(
        self, graph: Backend, info: WindowInfo, origin: int = 0, keep: int | None = None
    ) -> None:
        self.graph = graph
        self.plan = plan_steps(info.model, graph.input_specs["visual"].shape[1])  # its hop
        self.origin = origin
        self.steps = 0  # steps given to the graph so far (padding included)
        self.state = {
            name: np.zeros(spec.shape, np.float32)
            for name, spec in graph.input_specs.items()
            if name.startswith(STATE_PREFIX)
        }
        classes = info.model.num_classes
        box = (classes, 2) if info.model.class_aware_regression else (2,)
        hop = self.plan.hop
        keep = -(-(info.window if keep is None else keep) // hop) * hop  # whole calls
        self.capacity = [max(1, -(-keep // level.stride)) for level in self.plan.levels]
        self.scores = [np.zeros((count, classes), np.float32) for count in self.capacity]
        self.distances = [np.zeros((count, *box), np.float32) for count in self.capacity]

    def push(self, visual: np.ndarray, audio: np.ndarray) -> None:
        """The next steps' features, visual (K, Dv) and audio (K, Da). K must be a multiple of
        the graph's hop, except at the end of a stream: the last call is then padded."""
        hop = self.plan.hop
        for begin in range(0, len(visual), hop):
            count = min(hop, len(visual) - begin)
            self._call(visual[begin : begin + count], audio[begin : begin + count])

    def _call(self, visual: np.ndarray, audio: np.ndarray) -> None:
        hop, count = self.plan.hop, len(visual)
        valid = np.zeros((1, hop), np.float32)
        valid[0, :count] = 1.0
        if count < hop:  # the stream's last steps: padding after them
            visual = np.concatenate([visual, np.zeros((hop - count, visual.shape[1]), np.float32)])
            audio = np.concatenate([audio, np.zeros((hop - count, audio.shape[1]), np.float32)])
        self.steps += hop
        advance, odd = step_flags(self.plan, self.steps)
        outputs = self.graph.run(
            {
                "visual": np.ascontiguousarray(visual, np.float32)[None],
                "audio": np.ascontiguousarray(audio, np.float32)[None],
                "valid": valid,
                "advance": np.array(advance, np.float32),
                "odd": np.array(odd, np.float32),
                **self.state,
            }
        )
        for name in self.state:
            self.state[name] = outputs["next_" + name]
        self._keep(outputs["scores"][0], outputs["distances"][0])

    def _keep(self, scores: np.ndarray, distances: np.ndarray) -> None:
        """Each level's changed points (rows of scores (P, C), distances (P, 2)) into its ring."""
        row = 0
        for index, (level, newest) in enumerate(
            zip(self.plan.levels, newest_points(self.plan, self.steps), strict=True)
        ):
            points = np.arange(newest - level.head_points + 1, newest + 1)
            rows = np.arange(row, row + level.head_points)[points >= 0]
            # more changed points than kept (the top levels): the newest, last, win their slot
            slots = points[points >= 0] % self.capacity[index]
            self.scores[index][slots] = scores[rows]
            self.distances[index][slots] = distances[rows]
            row += level.head_points

    def window_outputs(self, first_step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores (N, C), segments (N, 2) and the points' positions (N,), in steps from
        ``first_step``, of each level's newest points within the last ``keep`` steps: what a
        window graph would give, without edges."""
        scores, segments, positions = [], [], []
        for index, (level, newest) in enumerate(
            zip(self.plan.levels, newest_points(self.plan, self.steps), strict=True)
        ):
            points = np.arange(newest - self.capacity[index] + 1, newest + 1)  # oldest first
            slots = points % self.capacity[index]
            level_scores = self.scores[index][slots] * (points >= 0)[:, None]
            at = (self.origin + points * level.stride - first_step).astype(np.float32)
            positions.append(at)
            distance = self.distances[index][slots]
            at = at.reshape((-1,) + (1,) * (distance.ndim - 2))
            segments.append(np.stack([at - distance[..., 0], at + distance[..., 1]], axis=-1))
            scores.append(level_scores)
        return np.concatenate(scores), np.concatenate(segments), np.concatenate(positions)
