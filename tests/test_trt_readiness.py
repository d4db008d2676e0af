"""export/trt_readiness.py: a clean graph passes; each planted TensorRT blocker is named."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `export` is a folder of scripts at the repository root
    sys.path.insert(0, str(ROOT))
readiness = importlib.import_module("export.trt_readiness")

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8])


def model(nodes, inputs=(X,), outputs=(Y,), initializers=(), functions=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    opsets = [helper.make_opsetid(domain, 1) for domain in ("local", "com.microsoft")]
    opsets.insert(0, helper.make_opsetid("", 18))
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def export(module: torch.nn.Module, *example: torch.Tensor) -> onnx.ModelProto:
    program = torch.onnx.export(
        module.eval(), example, dynamo=True, opset_version=18, verbose=False
    )
    return program.model_proto


class CleanWindow(torch.nn.Module):
    """Conv1d, LayerNorm, Linear, sigmoid and a constant-K TopK: what the LoCo graph is made of."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 16, 3, padding=1)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: (B, T, C)
        h = self.norm(torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2)))
        scores = torch.sigmoid(self.head(h)).flatten(1)  # (B, T * 4)
        return torch.topk(scores, 5)


class ManualLayerNorm(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt((centred**2).mean(-1, keepdim=True) + 1e-5)


def test_clean_torch_export_is_ready():
    assert readiness.check_trt_readiness(export(CleanWindow(), torch.randn(1, 6, 8))) == []


def test_decomposed_layer_norm_is_named():
    problems = readiness.check_trt_readiness(export(ManualLayerNorm(), torch.randn(1, 6, 8)))
    assert len(problems) == 1
    assert problems[0].op_type == "ReduceMean"
    assert "decomposed LayerNorm" in problems[0].reason
    assert "LayerNormalization" in problems[0].reason
    for op in ("Sub", "Pow", "Sqrt", "Div"):
        assert op in problems[0].reason


def test_nonzero_is_named():
    nodes = [
        helper.make_node("NonZero", ["x"], ["idx"], name="find_events"),
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
    ]
    problems = readiness.check_trt_readiness(model(nodes))
    assert [(p.node, p.op_type) for p in problems] == [("find_events", "NonZero")]
    assert "data-dependent" in problems[0].reason


def test_if_and_what_its_branches_hold_are_named():
    branch_out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 6, 8])
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["b"], name="then_relu")], "then", [], [branch_out]
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("NonZero", ["x"], ["nz"], name="else_nonzero"),
            helper.make_node("Neg", ["x"], ["b"], name="else_neg"),
        ],
        "else",
        [],
        [branch_out],
    )
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    nodes = [
        helper.make_node(
            "If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
        )
    ]
    problems = readiness.check_trt_readiness(model(nodes, inputs=(X, cond)))
    named = {(p.node, p.op_type) for p in problems}
    assert ("branch", "If") in named
    assert ("else_nonzero", "NonZero") in named
    nested = next(p for p in problems if p.node == "else_nonzero")
    assert "inside branch.else_branch" in nested.reason


def test_dynamic_dims_are_named_where_they_start():
    visual = helper.make_tensor_value_info("visual", TensorProto.FLOAT, [1, "T", 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T", 8])
    nodes = [
        helper.make_node("Relu", ["visual"], ["h"], name="relu"),
        helper.make_node("Neg", ["h"], ["y"], name="neg"),
    ]
    problems = readiness.check_trt_readiness(model(nodes, inputs=(visual,), outputs=(out,)))
    assert {(p.node, p.op_type) for p in problems} == {
        ("visual", "graph input"),
        ("y", "graph output"),
    }
    assert "dynamic shape (1, T, 8)" in problems[0].reason  # relu and neg only inherit it


def test_topk_with_computed_k_is_named():
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape", start=1, end=2),
        helper.make_node("TopK", ["x", "shape"], ["y", "idx"], name="top_candidates"),
    ]
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 6, 8])
    problems = readiness.check_trt_readiness(model(nodes, outputs=(Y, idx)))
    topk = [p for p in problems if p.op_type == "TopK"]
    assert [p.node for p in topk] == ["top_candidates"]
    assert "computed at run time by shape (Shape)" in topk[0].reason


def test_topk_with_constant_k_passes_and_too_large_k_fails():
    def topk_model(k: int) -> onnx.ModelProto:
        k_init = numpy_helper.from_array(np.array([k], np.int64), "k")
        values = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, k])
        flat = helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 5000])
        node = helper.make_node("TopK", ["flat", "k"], ["y", "i"], name="topk")
        idx = helper.make_tensor_value_info("i", TensorProto.INT64, [1, k])
        return model([node], inputs=(flat,), outputs=(values, idx), initializers=(k_init,))

    assert readiness.check_trt_readiness(topk_model(100)) == []
    problems = readiness.check_trt_readiness(topk_model(4000))
    assert [p.node for p in problems] == ["topk"] and "K < 3840" in problems[0].reason


def test_unsupported_and_custom_ops_are_named():
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
        helper.make_node("Unique", ["x"], ["u"], name="dedupe"),
        helper.make_node("FusedGelu", ["x"], ["g"], name="fused", domain="com.microsoft"),
    ]
    problems = readiness.check_trt_readiness(model(nodes))
    reasons = {p.node: p.reason for p in problems if p.op_type in ("Unique", "FusedGelu")}
    assert "not supported by TensorRT 10" in reasons["dedupe"]
    assert "custom domain 'com.microsoft'" in reasons["fused"]


def test_ops_inside_local_functions_are_checked():
    function = helper.make_function(
        "local",
        "Gate",
        ["a"],
        ["b"],
        [helper.make_node("NonZero", ["a"], ["b"], name="hidden_nonzero")],
        [helper.make_opsetid("", 18)],
    )
    nodes = [
        helper.make_node("Gate", ["x"], ["z"], name="gate", domain="local"),
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
    ]
    problems = readiness.check_trt_readiness(model(nodes, functions=[function]))
    assert any(p.op_type == "NonZero" and "hidden_nonzero" in p.node for p in problems)


def test_cli_prints_ok_or_each_problem(tmp_path):
    clean = tmp_path / "clean.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"], name="relu")]), clean)
    planted = tmp_path / "planted.onnx"
    nodes = [
        helper.make_node("NonZero", ["x"], ["i"], name="find_events"),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    onnx.save(model(nodes), planted)
    script = [sys.executable, str(ROOT / "export" / "trt_readiness.py")]

    ok = subprocess.run([*script, str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{clean}: OK"

    bad = subprocess.run([*script, str(clean), str(planted)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{planted}: 1 problem" in bad.stdout
    assert "find_events (NonZero): data-dependent output shape" in bad.stdout


@pytest.mark.parametrize("opset", [16, 21])
def test_opset_outside_what_tensorrt_10_parses(opset):
    graph = model([helper.make_node("Relu", ["x"], ["y"], name="relu")])
    graph.opset_import[0].version = opset
    problems = readiness.check_trt_readiness(graph)
    assert bool(problems) == (opset == 21)
