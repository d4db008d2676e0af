"""Smaller graph files, the same computation: shared and half-stored initializers.

The dynamo exporter folds every call of a helper such as ``relative_positions`` into its own
constant: the window graph carried the same (T, T) matrix once per attention block. Pointing every
use at one copy leaves the computation unchanged and shrinks the file. Weights that came from an
fp16 checkpoint (the shipped model's) are fp16 numbers held in fp32: stored as fp16 behind a Cast,
they take half the bytes for the very same values.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def share_identical_initializers(model: onnx.ModelProto) -> int:
    """Drop initializers equal (type, shape, bytes) to an earlier one and rename their uses to it.

    Works in place on the top-level graph; graph inputs and outputs are never merged. Returns the
    number of bytes no longer stored.
    """
    graph = model.graph
    interface = {value.name for value in (*graph.input, *graph.output)}
    first_of: dict[tuple, str] = {}  # (type, dims, bytes) -> name of the copy kept
    renamed: dict[str, str] = {}  # dropped name -> kept name
    kept, saved = [], 0
    for initializer in graph.initializer:
        data = numpy_helper.to_array(initializer).tobytes()
        key = (initializer.data_type, tuple(initializer.dims), data)
        if initializer.name in interface or key not in first_of:
            first_of.setdefault(key, initializer.name)
            kept.append(initializer)
            continue
        renamed[initializer.name] = first_of[key]
        saved += len(data)
    if not renamed:
        return 0
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    value_info = [value for value in graph.value_info if value.name not in renamed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    return saved


def store_exact_halves(model: onnx.ModelProto, min_elements: int = 1024) -> int:
    """Store fp32 initializers that fp16 holds exactly (weights of an fp16 checkpoint) as fp16,
    each behind a Cast to fp32 under its own name: the same numbers, half the bytes. ONNX
    Runtime folds the Casts when it loads the graph, so it computes in fp32 as before.

    Works in place on the top-level graph; returns the number of bytes no longer stored."""
    graph = model.graph
    kept, casts, saved = [], [], 0
    for initializer in graph.initializer:
        values = numpy_helper.to_array(initializer)
        with np.errstate(over="ignore", invalid="ignore"):  # out of fp16's range: not exact
            halves = values.astype(np.float16)
        exact = values.dtype == np.float32 and values.size >= min_elements
        if not exact or not np.array_equal(halves.astype(np.float32), values):
            kept.append(initializer)
            continue
        half_name = f"{initializer.name}__fp16"
        kept.append(numpy_helper.from_array(halves, half_name))
        casts.append(
            onnx.helper.make_node(
                "Cast", [half_name], [initializer.name], to=onnx.TensorProto.FLOAT
            )
        )
        saved += values.nbytes // 2
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return saved
