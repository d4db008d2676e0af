"""Identical ONNX initializers are stored once: the graph computes the same and the file shrinks."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export.initializers import share_identical_initializers, store_exact_halves
from export.window_graph import export_window_graph
from loco_stream.model import LoCo
from tests.tiny_model import tiny_config


def two_adds_of_one_constant() -> onnx.ModelProto:
    """y = (x + A) * B + A2, where A2 holds A's values and B differs from both."""
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    b = np.full((4, 4), 2.0, dtype=np.float32)
    initializers = [
        numpy_helper.from_array(a, "a"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(a.copy(), "a_again"),
        numpy_helper.from_array(a.reshape(2, 8), "a_2x8"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "a"], ["t1"]),
        helper.make_node("Mul", ["t1", "b"], ["t2"]),
        helper.make_node("Add", ["t2", "a_again"], ["t3"]),
        helper.make_node("ReduceSum", ["a_2x8"], ["s"], keepdims=0),
        helper.make_node("Add", ["t3", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_duplicates_are_merged_and_the_output_is_unchanged():
    model = two_adds_of_one_constant()
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    before = run(model, x)
    saved = share_identical_initializers(model)
    assert saved == 16 * 4
    # Same bytes in another shape (a_2x8) is a different constant and stays.
    assert [i.name for i in model.graph.initializer] == ["a", "b", "a_2x8"]
    assert [list(n.input) for n in model.graph.node][2] == ["t2", "a"]
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_array_equal(run(model, x), before)
    assert share_identical_initializers(model) == 0  # nothing left to share


def test_exported_window_graph_stores_each_constant_once(tmp_path):
    # At 64 steps the exporter folds the (T, T) relative positions once per attention block.
    config = tiny_config(window=64)
    model = LoCo(config.model).eval()
    path = export_window_graph(model, config, ["a", "b", "c"], tmp_path, 64)
    contents = [
        (i.data_type, tuple(i.dims), numpy_helper.to_array(i).tobytes())
        for i in onnx.load(str(path)).graph.initializer
    ]
    assert len(contents) == len(set(contents))


def test_fp16_exact_weights_are_stored_as_halves_and_compute_the_same():
    """An fp16 checkpoint's weight is stored as fp16 behind a Cast; a weight fp16 cannot hold
    exactly stays fp32; the outputs are bit for bit the same, the file smaller."""
    rng = np.random.default_rng(1)
    exact = rng.standard_normal((64, 64)).astype(np.float16).astype(np.float32)
    inexact = exact + np.float32(1e-6)
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "exact"], ["t"]),
                helper.make_node("MatMul", ["t", "inexact"], ["y"]),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])],
            [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    x = rng.standard_normal((4, 64)).astype(np.float32)
    before, size = run(model, x), model.ByteSize()
    assert store_exact_halves(model) == exact.nbytes // 2
    onnx.checker.check_model(model, full_check=True)
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types == {"exact__fp16": TensorProto.FLOAT16, "inexact": TensorProto.FLOAT}
    assert np.array_equal(run(model, x), before)
    assert model.ByteSize() < size - exact.nbytes // 3
