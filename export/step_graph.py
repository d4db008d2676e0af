"""Export the step graph (``loco_step.onnx``) of a streamable model and prove it equals torch.

The step graph (`loco_stream.model.streaming.StepGraph`) takes the newest ``hop`` steps and the
state of the previous call, and gives the changed points' scores and distances and the new
state. It exports like the window graph (dynamo, opset 18, static shapes, the same checks); its
verification runs a stream of calls through torch, each fed the state torch left, and compares
every output of every call with ONNX Runtime's: a clip of three top-level strides with random
features, the last call padded (``valid`` 0 after the clip's end).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from export.graphs import (
    TOLERANCE,
    Inputs,
    OutputError,
    count_layer_norms,
    export_graph,
    report_errors,
    require_agreement,
    require_constraints,
    verify_against_torch,
)
from loco_stream.bundle import STEP_GRAPH, WindowInfo, embedded_metadata, package_version
from loco_stream.config import ModelConfig
from loco_stream.model import LoCo
from loco_stream.model.streaming import StepGraph
from loco_stream.step_plan import NotStreamable, check_streamable, step_flags


def step_hop_for(config: ModelConfig, hop: int) -> tuple[int, str]:
    """The step graph's steps a call for a stream hop of ``hop`` steps (the hop itself), or 0
    and why the model gets no step graph."""
    try:
        check_streamable(config)
    except NotStreamable as error:
        return 0, str(error)
    if hop & (hop - 1):
        return 0, f"the hop ({hop} steps) is not a power of two"
    return hop, ""


def state_names(count: int) -> tuple[list[str], list[str]]:
    """The graph's state inputs and the outputs that carry them to the next call."""
    names = [f"state_{index}" for index in range(count)]
    return names, [f"next_{name}" for name in names]


def stream_feeds(graph: StepGraph, steps: int, seed: int = 0) -> list[Inputs]:
    """The inputs of every call over ``steps`` random steps (the last call padded), each with the
    state torch leaves after the call before."""
    config, plan = graph.model.config, graph.plan
    rng = np.random.default_rng(seed)
    state = [tensor.numpy() for tensor in graph.initial_state()]
    names, _ = state_names(len(state))
    feeds = []
    for end in range(plan.hop, steps + plan.hop, plan.hop):
        valid = (np.arange(end - plan.hop, end) < steps).astype(np.float32)[None]  # (1, hop)
        advance, odd = step_flags(plan, end)
        feed = {
            "visual": rng.standard_normal((1, plan.hop, config.visual_dim), dtype=np.float32),
            "audio": rng.standard_normal((1, plan.hop, config.audio_dim), dtype=np.float32),
            "valid": valid,
            "advance": np.array(advance, np.float32),
            "odd": np.array(odd, np.float32),
            **dict(zip(names, state, strict=True)),
        }
        feeds.append(feed)
        with torch.inference_mode():
            outputs = graph(*(torch.from_numpy(array) for array in feed.values()))
        state = [tensor.numpy() for tensor in outputs[2:]]
    return feeds


def export_step_graph(
    model: LoCo,
    info: WindowInfo,
    out_dir: Path,
    hop: int,
    say: Callable[[str], None] = print,
    name: str = STEP_GRAPH,
) -> dict[str, OutputError]:
    """Export ``out_dir/name``, ``hop`` steps a call, with the model directory's metadata
    ``info``; check it and compare it with torch over a stream of calls; the error of each
    output. Raises ExportError on a failure."""
    graph = StepGraph(model, hop).eval()
    feeds = stream_feeds(graph, 3 * max(model.config.max_stride, hop) + hop // 2 + 1)
    _, next_names = state_names(len(graph.state_shapes))
    metadata = embedded_metadata(info, package_version(), step=True)
    path = out_dir / name
    # an fp16 checkpoint's weights stored as fp16: half the file
    outputs = ["scores", "distances", *next_names]
    export_graph(graph, feeds[0], outputs, path, metadata, exact_halves=True)
    say(f"      {path} ({path.stat().st_size / 2**20:.1f} MiB, {hop} steps a call)")
    require_constraints(path, count_layer_norms(graph, feeds[0]))
    say(f"      ONNX Runtime vs torch on a stream of {len(feeds)} calls (the last padded)")
    errors = verify_against_torch(graph, path, feeds)
    failed = [name for name in next_names if not errors[name].within(TOLERANCE)]
    state = [errors.pop(name) for name in next_names]  # one line for the state
    errors["state"] = OutputError(max(e.max_abs for e in state), max(e.scale for e in state))
    require_agreement(path, failed + report_errors(errors, TOLERANCE, say))
    return errors
