"""Will TensorRT build this ONNX graph as it is? A static check that needs no TensorRT and no GPU.

    python export/trt_readiness.py model/loco.onnx model/audio_extractor.onnx

prints ``OK`` or every problem (exit status 1 if any). What is checked, after local functions
are inlined:
- every op is one that TensorRT 10's ONNX parser supports (``SUPPORTED_OPS``), and the opset is
  one that every TensorRT 10.x parses;
- no data-dependent control flow or shapes anywhere, subgraphs included: If, Loop, Scan, NonZero
  (docs/architecture.md: decode, NMS and stitching live on the host);
- every graph input and output, and after shape inference every value, has static dims; a dynamic
  value is reported where dynamism starts, not at every value downstream of it;
- TopK's K is a build-time constant (an initializer or a Constant node) under TensorRT's limit;
- LayerNorm appears as single LayerNormalization nodes, not decomposed into ReduceMean, Sub, Pow,
  ReduceMean, Add, Sqrt, Div (which overflows in FP16).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import numpy_helper, shape_inference

# ONNX ops that TensorRT's ONNX parser (onnx-tensorrt) supports: the "Supported: Y" rows of its
# docs/operators.md for TensorRT 10.x (as of TensorRT 10.15). Ops that the project forbids even
# though the parser takes them are in FORBIDDEN_OPS, not here.
SUPPORTED_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
    BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant
    ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear
    Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax
    Identity ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

# Parsed by TensorRT, refused here: the exported graph must be static and control-flow free.
FORBIDDEN_OPS = {
    "If": "data-dependent control flow (If): compute the branch on the host or with Where",
    "Loop": "data-dependent control flow (Loop): unroll it at export time",
    "Scan": "data-dependent control flow (Scan): unroll it at export time",
    "NonZero": "data-dependent output shape (NonZero): use masks, or do it on the host",
}

OPSETS = range(9, 21)  # default-domain opsets that TensorRT 10.0 parses (later 10.x go to 24)
TOPK_MAX_K = 3840  # onnx-tensorrt: TopK's K must be below 3840


@dataclass(frozen=True)
class Problem:
    """Something in the graph that keeps TensorRT from building it as the project needs."""

    node: str  # node name, or tensor name for a graph input or output
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}): {self.reason}"


def _label(node: onnx.NodeProto) -> str:
    """A node's name, or its op and first output when it has none."""
    return node.name or f"<unnamed {node.op_type} -> {node.output[0] if node.output else '?'}>"


def _walk(graph: onnx.GraphProto, where: str = "") -> Iterator[tuple[onnx.NodeProto, str]]:
    """Every node of ``graph`` and of its subgraphs, with where it sits ("" at the top level)."""
    for node in graph.node:
        yield node, where
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs
            for sub in subgraphs:
                yield from _walk(sub, f"{where}{_label(node)}.{attr.name} > ")


def _check_opset(model: onnx.ModelProto) -> list[Problem]:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or version in OPSETS:
        return []
    reason = (
        f"opset {version}: TensorRT 10.0 parses opsets {OPSETS.start}-{OPSETS.stop - 1} "
        "(export at opset 18)"
    )
    return [Problem("<model>", "opset", reason)]


def _op_problem(node: onnx.NodeProto) -> str | None:
    """Why TensorRT (or the project) will not take this op; None if it will."""
    if node.domain not in ("", "ai.onnx"):
        return (
            f"op from custom domain '{node.domain}': TensorRT's ONNX parser takes standard "
            "ONNX ops only (anything else needs a TensorRT plugin)"
        )
    if node.op_type in FORBIDDEN_OPS:
        return FORBIDDEN_OPS[node.op_type]
    if node.op_type not in SUPPORTED_OPS:
        return "not supported by TensorRT 10's ONNX parser (onnx-tensorrt)"
    return None


def _check_ops(graph: onnx.GraphProto) -> list[Problem]:
    problems = []
    for node, where in _walk(graph):
        reason = _op_problem(node)
        if reason is not None:
            inside = f" [inside {where.removesuffix(' > ')}]" if where else ""
            problems.append(Problem(_label(node), node.op_type, reason + inside))
    return problems


def _dims(value: onnx.ValueInfoProto | None) -> list[int | str | None] | None:
    """A value's dims (int, symbolic name, or None when unknown); None when it has no shape."""
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in value.type.tensor_type.shape.dim
    ]


def _is_static(dims: list[int | str | None] | None) -> bool:
    return dims is not None and all(isinstance(d, int) for d in dims)


def _describe(name: str, dims: list[int | str | None] | None) -> str:
    if dims is None:
        return f"'{name}' has no known shape"
    shown = ", ".join("?" if d is None else str(d) for d in dims)
    return f"'{name}' has dynamic shape ({shown})"


def _check_static_shapes(graph: onnx.GraphProto) -> list[Problem]:
    problems = []
    initializers = {t.name for t in graph.initializer}
    values = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    # Outputs of ops reported already are not reported again for their shapes.
    dynamic = {name for node in graph.node if _op_problem(node) for name in node.output}
    for kind, declared in (("graph input", graph.input), ("graph output", graph.output)):
        for value in declared:
            dims = _dims(value)
            if value.name not in initializers and not _is_static(dims):
                problems.append(Problem(value.name, kind, _describe(value.name, dims)))
                dynamic.add(value.name)
    for node in graph.node:
        upstream = any(name in dynamic for name in node.input)
        for name in filter(None, node.output):
            dims = _dims(values.get(name))
            if _is_static(dims) or name in dynamic:
                continue
            dynamic.add(name)
            if not upstream:  # report where dynamism starts, not everything downstream of it
                reason = f"output {_describe(name, dims)}; TensorRT needs static shapes"
                problems.append(Problem(_label(node), node.op_type, reason))
    return problems


def _constant(name: str, graph: onnx.GraphProto) -> tuple[list[int] | None, onnx.NodeProto | None]:
    """The integer values of ``name`` if it is a build-time constant, else None; its producer."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor).reshape(-1).tolist(), None
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.op_type != "Constant":
        return None, producer
    attr = producer.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t).reshape(-1).tolist(), producer
    return ([attr.i] if attr.name == "value_int" else list(attr.ints)), producer


def _check_topk(graph: onnx.GraphProto) -> list[Problem]:
    problems = []
    for node in (n for n in graph.node if n.op_type == "TopK"):
        k_name = node.input[1]
        values, producer = _constant(k_name, graph)
        if values is None:
            by = f" by {_label(producer)} ({producer.op_type})" if producer else ""
            reason = (
                f"K ('{k_name}') is computed at run time{by}; TensorRT needs a build-time "
                "constant K: make it a Python int in the model code"
            )
            problems.append(Problem(_label(node), "TopK", reason))
        elif values[0] >= TOPK_MAX_K:
            reason = f"K = {values[0]} but TensorRT's TopK needs K < {TOPK_MAX_K}"
            problems.append(Problem(_label(node), "TopK", reason))
        if any(a.name == "sorted" and a.i == 0 for a in node.attribute):
            problems.append(Problem(_label(node), "TopK", "sorted=0, TensorRT needs sorted=1"))
    return problems


def _check_layer_norms(graph: onnx.GraphProto) -> list[Problem]:
    """Find ReduceMean -> Sub -> Pow|Mul -> ReduceMean -> Add -> Sqrt -> Div|Reciprocal+Mul."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def after(node: onnx.NodeProto, *ops: str) -> list[onnx.NodeProto]:
        return [n for n in consumers[node.output[0]] if n.op_type in ops]

    problems = []
    for mean in (n for n in graph.node if n.op_type == "ReduceMean"):
        x = mean.input[0]
        for sub in after(mean, "Sub"):
            if list(sub.input) != [x, mean.output[0]]:
                continue
            centred = sub.output[0]
            squares = [n for n in after(sub, "Pow", "Mul") if n.input[0] == centred]
            squares = [n for n in squares if n.op_type == "Pow" or n.input[1] == centred]
            for square in squares:
                for var in after(square, "ReduceMean"):
                    for add in after(var, "Add"):
                        for sqrt in after(add, "Sqrt"):
                            ends = [n for n in after(sqrt, "Div") if n.input[0] == centred]
                            ends += after(sqrt, "Reciprocal")
                            for end in ends:
                                chain = [mean, sub, square, var, add, sqrt, end]
                                problems.append(_decomposed_layer_norm(chain))
    return problems


def _decomposed_layer_norm(chain: list[onnx.NodeProto]) -> Problem:
    ops = " -> ".join(n.op_type for n in chain)
    names = ", ".join(_label(n) for n in chain)
    reason = (
        f"decomposed LayerNorm ({ops}: {names}); export it as one LayerNormalization node "
        "(nn.LayerNorm / F.layer_norm at opset >= 17): the decomposed form overflows in FP16"
    )
    return Problem(_label(chain[0]), chain[0].op_type, reason)


def check_trt_readiness(model: str | Path | onnx.ModelProto) -> list[Problem]:
    """Every problem that keeps TensorRT 10 from building ``model`` statically; [] when ready."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    problems = _check_opset(model)
    model = onnx.inliner.inline_local_functions(model)
    problems += _check_ops(model.graph)
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except shape_inference.InferenceError as err:
        problems.append(Problem("<model>", "shape inference", f"failed: {err}"))
        inferred = model
    problems += _check_static_shapes(inferred.graph)
    problems += _check_topk(model.graph)
    problems += _check_layer_norms(model.graph)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", nargs="+", type=Path, metavar="GRAPH.onnx")
    args = parser.parse_args(argv)
    status = 0
    for path in args.graphs:
        try:
            model = onnx.load(str(path))
        except (OSError, DecodeError) as err:
            print(f"{path}: cannot read: {err}")
            status = 2
            continue
        problems = check_trt_readiness(model)
        if not problems:
            print(f"{path}: OK")
            continue
        print(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
        for problem in problems:
            print(f"  - {problem}")
        status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
