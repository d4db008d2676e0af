"""Share identical initializers of an ONNX graph, so each constant is stored once.

The dynamo exporter folds every call of a helper such as ``relative_positions`` into its own
constant: the window graph carried the same (T, T) matrix once per attention block. Pointing every
use at one copy leaves the computation unchanged and shrinks the file.
"""

from __future__ import annotations

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
