"""Static checks on an exported ONNX graph, before any TensorRT is at hand.

1. Every op is one TensorRT's ONNX parser supports, at an opset it parses.
2. No training-only nodes (Dropout, ``training_mode=1``).
3. Constant folding is complete: no node computes only from initializers / Constant outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import onnx

from .errors import GraphCheckError

# Opsets the TensorRT 10 ONNX parser accepts: 9..20 since TensorRT 10.0 (10.15 goes to 24).
# The lower bound of the 10.x line is used so an engine can be built with any TensorRT 10.
TRT_OPSET_RANGE = (9, 20)

# Operators marked supported ("Y") in onnx-tensorrt's docs/operators.md for TensorRT 10.x
# (https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md). Ops added only in late
# 10.x releases for opset >= 23 (Attention, RMSNormalization, RotaryEmbedding, TensorScatter) are
# left out: they are outside TRT_OPSET_RANGE anyway. Per-op restrictions (e.g. Slice axes must
# be constant) are not modelled here; the real parser is the final word.
TRT_SUPPORTED_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose
    Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp
    Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
    HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
    Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
    Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round STFT
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size
    Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

TRAINING_ONLY_OPS = frozenset({"Dropout"})
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """All nodes, subgraphs (If/Loop/Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in _DEFAULT_DOMAINS:
            return int(o.version)
    raise GraphCheckError("the ONNX model imports no default-domain opset")


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in _nodes(model.graph)).items()))


def _foldable(graph: onnx.GraphProto) -> Iterable[str]:
    constant = {t.name for t in graph.initializer}
    constant |= {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "Constant" and inputs and all(i in constant for i in inputs):
            yield f"{node.op_type} {node.name or node.output[0]!r}"


def check_graph(
    model: onnx.ModelProto,
    supported: frozenset[str] = TRT_SUPPORTED_OPS,
    opset_range: tuple[int, int] = TRT_OPSET_RANGE,
) -> list[str]:
    """Problems found (empty when the graph is clean)."""
    problems = []
    opset = default_opset(model)
    lo, hi = opset_range
    if not lo <= opset <= hi:
        problems.append(f"opset {opset} is outside the TensorRT 10 parser's range {lo}..{hi}")
    unsupported: Counter[str] = Counter()
    for node in _nodes(model.graph):
        if node.domain not in _DEFAULT_DOMAINS:
            unsupported[f"{node.domain}::{node.op_type}"] += 1
        elif node.op_type not in supported:
            unsupported[node.op_type] += 1
        if node.op_type in TRAINING_ONLY_OPS:
            problems.append(f"training-only node {node.op_type} {node.name!r}")
        for attr in node.attribute:
            if attr.name == "training_mode" and onnx.helper.get_attribute_value(attr):
                problems.append(f"{node.op_type} {node.name!r} is in training mode")
    problems += [f"op {op} ({n} nodes) is not supported by TensorRT's ONNX parser" for op, n in unsupported.items()]
    foldable = list(_foldable(model.graph))
    if foldable:
        shown = ", ".join(foldable[:5]) + (f" and {len(foldable) - 5} more" if len(foldable) > 5 else "")
        problems.append(f"{len(foldable)} nodes compute only from constants (constant folding left them): {shown}")
    return problems


def assert_graph_ok(model: onnx.ModelProto, **kwargs) -> None:
    problems = check_graph(model, **kwargs)
    if problems:
        raise GraphCheckError("the exported ONNX graph fails the TensorRT/static check:\n  - " + "\n  - ".join(problems))
