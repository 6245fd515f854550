"""TensorFlow graph ops as torch ops, for the TF.js graph importer.

Tensors keep TensorFlow's layout (NHWC). A convolution permutes its NHWC input to an NCHW *view*, which
is a channels_last tensor, so the conv runs in channels_last with no copy, and permutes the result back.

Each entry of `OPS` is a builder: `builder(node, const) -> run`, where `const(i)` returns the node's i-th
input if that input is a constant (else None) and `run(*inputs)` computes the node's output(s). Builders
prepare weights once (HWIO filters -> OIHW, channels_last).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from posekit.zoo.tfjs_format import GraphNode

Tensor = torch.Tensor
ConstLookup = Callable[[int], Tensor | None]
Builder = Callable[[GraphNode, ConstLookup], Callable[..., Any]]

_DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool, "DT_INT64": torch.int64}


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME': output = ceil(size / stride); any odd pixel of padding goes at the end."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(node: GraphNode, x: Tensor, kh: int, kw: int) -> list[int]:
    """[top, bottom, left, right] padding of an NHWC input."""
    padding = node.attr.get("padding", "VALID")
    sh, sw = node.attr["strides"][1:3]
    dh, dw = (node.attr.get("dilations") or [1, 1, 1, 1])[1:3]
    if padding == "SAME":
        return [*tf_same_padding(int(x.shape[1]), kh, sh, dh), *tf_same_padding(int(x.shape[2]), kw, sw, dw)]
    if padding == "EXPLICIT":
        p = node.attr["explicit_paddings"]
        return [p[2], p[3], p[4], p[5]]
    return [0, 0, 0, 0]


def _activation(name: str | None, alpha: Tensor | None) -> Callable[[Tensor], Tensor]:
    if name is None:
        return lambda y: y
    if name == "Relu":
        return torch.relu
    if name == "Relu6":
        return lambda y: torch.clamp(y, 0.0, 6.0)
    if name == "Prelu":
        return lambda y: torch.where(y > 0, y, y * alpha)
    raise NotImplementedError(f"fused activation {name}")


@dataclass(frozen=True)
class ConvSpec:
    """A TF convolution node prepared for torch: OIHW channels_last weight, optional bias, and how to run it."""

    weight: Tensor
    bias: Tensor | None
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    kernel: tuple[int, int]
    activation: Callable[[Tensor], Tensor]


def conv_spec(node: GraphNode, const: ConstLookup, depthwise: bool) -> ConvSpec:
    if node.attr.get("data_format", "NHWC") != "NHWC":
        raise NotImplementedError(f"{node.name}: data_format {node.attr['data_format']}")
    filt = const(1)
    if filt is None:
        raise NotImplementedError(f"{node.name}: filter is not a constant")
    kh, kw, cin, cm = filt.shape
    if depthwise:  # [kh, kw, C, M] -> [C*M, 1, kh, kw]; output channel c*M + m, as in TF
        weight = filt.permute(2, 3, 0, 1).reshape(cin * cm, 1, kh, kw)
        groups = cin
    else:  # HWIO -> OIHW
        weight = filt.permute(3, 2, 0, 1)
        groups = 1
    fused = node.attr.get("fused_ops", [])
    bias = const(2) if fused and fused[0] == "BiasAdd" else None
    if fused and fused[0] != "BiasAdd":
        raise NotImplementedError(f"{node.name}: fused ops {fused}")
    act = _activation(fused[1] if len(fused) > 1 else None, const(3) if len(fused) > 1 else None)
    return ConvSpec(weight.contiguous(memory_format=torch.channels_last), bias, groups, tuple(node.attr["strides"][1:3]),
                    tuple((node.attr.get("dilations") or [1, 1, 1, 1])[1:3]), (kh, kw), act)  # fmt: skip


def run_conv(node: GraphNode, spec: ConvSpec, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The convolution of `node` on NHWC `x` with the given (possibly trainable) weight and bias."""
    top, bottom, left, right = _spatial_padding(node, x, *spec.kernel)
    x = x.permute(0, 3, 1, 2)
    # Symmetric padding goes into the conv; TF's asymmetric SAME padding is a zero Pad on the NCHW view,
    # which ONNX Runtime fuses into its Conv (a Pad on the NHWC tensor stays a separate copy there).
    if top == bottom and left == right:
        padding = (top, left)
    else:
        x, padding = F.pad(x, (left, right, top, bottom)), (0, 0)
    y = F.conv2d(x, weight, bias, spec.stride, padding, spec.dilation, spec.groups)
    return spec.activation(y.permute(0, 2, 3, 1))


def _conv_builder(depthwise: bool) -> Builder:
    def build(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
        spec = conv_spec(node, const, depthwise)
        return lambda x, *_: run_conv(node, spec, x, spec.weight, spec.bias)

    return build


CONV_OPS = {"Conv2D": False, "_FusedConv2D": False, "DepthwiseConv2dNative": True, "FusedDepthwiseConv2dNative": True}  # op -> depthwise


def _conv_transpose(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
    """Conv2DBackpropInput(output_shape, filter [kh, kw, out, in], x): the gradient of a SAME/VALID conv, i.e. a
    transposed conv; torch's full-size result is cropped where TF's forward padding would have started."""
    if node.attr.get("data_format", "NHWC") != "NHWC" or node.attr.get("padding") not in ("SAME", "VALID"):
        raise NotImplementedError(f"{node.name}: {node.attr.get('data_format')} / {node.attr.get('padding')}")
    filt = const(1)
    if filt is None:
        raise NotImplementedError(f"{node.name}: filter is not a constant")
    kh, kw = filt.shape[:2]
    weight = filt.permute(3, 2, 0, 1).contiguous()  # [in, out, kh, kw], torch's transposed-conv layout
    sh, sw = node.attr["strides"][1:3]

    def run(output_shape: Tensor, _filter: Tensor, x: Tensor) -> Tensor:
        oh, ow = (int(v) for v in output_shape.tolist()[1:3])
        y = F.conv_transpose2d(x.permute(0, 3, 1, 2), weight, stride=(sh, sw))
        top = tf_same_padding(oh, kh, sh)[0] if node.attr["padding"] == "SAME" else 0
        left = tf_same_padding(ow, kw, sw)[0] if node.attr["padding"] == "SAME" else 0
        return y[:, :, top : top + oh, left : left + ow].permute(0, 2, 3, 1)

    return run


def _depth_to_space(node: GraphNode, const: ConstLookup) -> Callable[[Tensor], Tensor]:
    """TF DepthToSpace (NHWC, DCR order): out[h*b + i, w*b + j, c] = in[h, w, (i*b + j)*C + c]."""
    b = int(node.attr["block_size"])

    def run(x: Tensor) -> Tensor:
        n, h, w, c = x.shape
        return x.reshape(n, h, w, b, b, c // (b * b)).permute(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c // (b * b))

    return run


def _matmul(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
    """MatMul and _FusedMatMul (a @ b, then the fused BiasAdd and activation)."""
    fused = node.attr.get("fused_ops", [])
    if fused and fused[0] != "BiasAdd":
        raise NotImplementedError(f"{node.name}: fused ops {fused}")
    ta, tb = bool(node.attr.get("transpose_a", False)), bool(node.attr.get("transpose_b", False))
    act = _activation(fused[1] if len(fused) > 1 else None, const(3) if len(fused) > 1 else None)

    def run(a: Tensor, b: Tensor, bias: Tensor | None = None, *_: Tensor) -> Tensor:
        y = (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
        return act(y + bias if fused else y)

    return run


def _max_pool(node: GraphNode, const: ConstLookup) -> Callable[[Tensor], Tensor]:
    kh, kw = node.attr["ksize"][1:3]
    stride = tuple(node.attr["strides"][1:3])

    def run(x: Tensor) -> Tensor:
        top, bottom, left, right = _spatial_padding(node, x, kh, kw)
        if top or bottom or left or right:
            x = F.pad(x, (0, 0, left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x.permute(0, 3, 1, 2), (kh, kw), stride).permute(0, 2, 3, 1)

    return run


def _resize_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Lower index, upper index and weight of the upper one, as tfjs/TF compute them."""
    if align_corners and out_size > 1:
        scale = (in_size - 1) / (out_size - 1)
    else:
        scale = in_size / out_size
    dst = torch.arange(out_size, dtype=torch.float64)
    src = (dst + 0.5) * scale - 0.5 if half_pixel else dst * scale
    lower = torch.clamp(torch.floor(src), min=0)
    frac = (src - lower).to(torch.float32)
    upper = torch.clamp(torch.ceil(src), max=in_size - 1)
    return lower.long().clamp(max=in_size - 1), upper.long(), frac


def _resize_bilinear(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
    align = bool(node.attr.get("align_corners", False))
    half = bool(node.attr.get("half_pixel_centers", False))

    def run(x: Tensor, size: Tensor) -> Tensor:
        oh, ow = (int(v) for v in size.tolist())
        if half and not align:  # identical to torch's align_corners=False, and much faster
            y = F.interpolate(x.permute(0, 3, 1, 2), size=(oh, ow), mode="bilinear", align_corners=False)
            return y.permute(0, 2, 3, 1)
        y0, y1, fy = _resize_axis(x.shape[1], oh, align, half)
        x0, x1, fx = _resize_axis(x.shape[2], ow, align, half)
        fy = fy.view(1, -1, 1, 1)
        fx = fx.view(1, 1, -1, 1)
        rows = x[:, y0] + (x[:, y1] - x[:, y0]) * fy
        return rows[:, :, x0] + (rows[:, :, x1] - rows[:, :, x0]) * fx

    return run


def _strided_slice(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
    a = node.attr
    begin_mask, end_mask = a.get("begin_mask", 0), a.get("end_mask", 0)
    ellipsis_mask, new_axis_mask, shrink_mask = a.get("ellipsis_mask", 0), a.get("new_axis_mask", 0), a.get("shrink_axis_mask", 0)

    def run(x: Tensor, begin: Tensor, end: Tensor, strides: Tensor) -> Tensor:
        index: list[Any] = []
        for i, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
            bit = 1 << i
            if ellipsis_mask & bit:
                index.append(Ellipsis)
            elif new_axis_mask & bit:
                index.append(None)
            elif shrink_mask & bit:
                index.append(b)
            else:
                if s < 0:
                    raise NotImplementedError(f"{node.name}: negative strides")
                index.append(slice(None if begin_mask & bit else b, None if end_mask & bit else e, s))
        return x[tuple(index)]

    return run


def _select(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    if cond.dim() == 1 and a.dim() > 1:  # TF v1 Select: a vector condition picks rows
        cond = cond.view(-1, *([1] * (a.dim() - 1)))
    return torch.where(cond, a, b)


def _floor_div(a: Tensor, b: Tensor) -> Tensor:
    if a.dtype.is_floating_point:
        return torch.floor(a / b)
    return torch.div(a, b, rounding_mode="floor")


def _top_k(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """TF's TopK: descending, ties in index order (torch.topk leaves ties unspecified). A full stable sort
    of CenterNet's 1.3M scores took 28 ms; only the values >= the k-th largest are stable-sorted here."""
    k_ = min(int(k), x.shape[-1])
    if k_ == 0 or k_ * 8 >= x.shape[-1] or torch.isnan(x).any():
        values, indices = torch.sort(x, dim=-1, descending=True, stable=True)
        return values[..., :k_], indices[..., :k_].to(torch.int32)
    rows = x.reshape(-1, x.shape[-1])
    kth = torch.topk(rows, k_, dim=-1).values[:, -1]
    out_v, out_i = [], []
    for row, t in zip(rows, kth):
        candidates = torch.nonzero(row >= t).squeeze(1)  # ascending index: the stable sort keeps it on ties
        order = torch.sort(row[candidates], descending=True, stable=True).indices[:k_]
        out_v.append(row[candidates[order]])
        out_i.append(candidates[order])
    shape = (*x.shape[:-1], k_)
    return torch.stack(out_v).reshape(shape), torch.stack(out_i).reshape(shape).to(torch.int32)


def _gather_nd(params: Tensor, indices: Tensor) -> Tensor:
    idx = indices.long()
    return params[tuple(idx[..., j] for j in range(idx.shape[-1]))]


def _gather_v2(params: Tensor, indices: Tensor, axis: Tensor) -> Tensor:
    ax = int(axis) % params.dim()
    flat = params.index_select(ax, indices.reshape(-1).long())
    return flat.reshape(*params.shape[:ax], *indices.shape, *params.shape[ax + 1 :])


def _reduce(fn: Callable[..., Tensor]) -> Builder:
    def build(node: GraphNode, const: ConstLookup) -> Callable[..., Tensor]:
        keep = bool(node.attr.get("keep_dims", False))

        def run(x: Tensor, axes: Tensor) -> Tensor:
            dims = [int(d) for d in axes.reshape(-1).tolist()]
            return fn(x, dims, keep)

        return run

    return build


def _simple(fn: Callable[..., Any]) -> Builder:
    return lambda node, const: fn


def _with_attr(fn: Callable[..., Any]) -> Builder:
    """An op whose function also needs the node's attributes."""
    return lambda node, const: lambda *xs: fn(node.attr, *xs)


def _pad(x: Tensor, paddings: Tensor, value: Tensor | None = None) -> Tensor:
    """TF Pad/PadV2: `paddings` [rank, 2] (before, after) per dim, first dim first; F.pad wants last first."""
    flat = [int(v) for row in reversed(paddings.tolist()) for v in row]
    return F.pad(x, flat, value=0.0 if value is None else value.item())


def _squeeze(attr: dict[str, Any], x: Tensor) -> Tensor:
    dims = attr.get("squeeze_dims") or [d for d, s in enumerate(x.shape) if s == 1]
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


def _pack(attr: dict[str, Any], *xs: Tensor) -> Tensor:
    # Converted graphs store some scalar constants as [1]; tfjs reshapes every input like the first one.
    return torch.stack([x.reshape(xs[0].shape) for x in xs], dim=attr.get("axis", 0))


OPS: dict[str, Builder] = {
    "Identity": _simple(lambda x: x),
    "Cast": _with_attr(lambda a, x: x.to(_DTYPES[a["DstT"]])),
    "Conv2D": _conv_builder(depthwise=False),
    "_FusedConv2D": _conv_builder(depthwise=False),
    "DepthwiseConv2dNative": _conv_builder(depthwise=True),
    "FusedDepthwiseConv2dNative": _conv_builder(depthwise=True),
    "Conv2DBackpropInput": _conv_transpose,
    "DepthToSpace": _depth_to_space,
    "MatMul": _matmul,
    "_FusedMatMul": _matmul,
    "Prelu": _simple(lambda x, alpha: torch.where(x > 0, x, x * alpha)),
    "MaxPool": _max_pool,
    "ResizeBilinear": _resize_bilinear,
    "Add": _simple(torch.add),
    "AddV2": _simple(torch.add),
    "AddN": _simple(lambda *xs: sum(xs[1:], xs[0])),
    "Sub": _simple(torch.sub),
    "Mul": _simple(torch.mul),
    "RealDiv": _simple(torch.div),
    "FloorDiv": _simple(_floor_div),
    "FloorMod": _simple(torch.remainder),
    "Maximum": _simple(torch.maximum),
    "Minimum": _simple(torch.minimum),
    "SquaredDifference": _simple(lambda a, b: (a - b) * (a - b)),
    "Abs": _simple(torch.abs),
    "Exp": _simple(torch.exp),
    "Sqrt": _simple(torch.sqrt),
    "Reciprocal": _simple(torch.reciprocal),
    "Sigmoid": _simple(torch.sigmoid),
    "Relu": _simple(torch.relu),
    "Relu6": _simple(lambda x: torch.clamp(x, 0.0, 6.0)),
    "Equal": _simple(torch.eq),
    "Less": _simple(torch.lt),
    "Greater": _simple(torch.gt),
    "GreaterEqual": _simple(torch.ge),
    "LogicalAnd": _simple(torch.logical_and),
    "Select": _simple(_select),
    "Mean": _reduce(lambda x, d, k: x.mean(dim=d, keepdim=k)),
    "Sum": _reduce(lambda x, d, k: x.sum(dim=d, keepdim=k)),
    "Max": _reduce(lambda x, d, k: x.amax(dim=d, keepdim=k)),
    "ArgMax": _simple(lambda x, axis: torch.argmax(x, dim=int(axis)).to(torch.int32)),
    "TopKV2": _simple(_top_k),
    "GatherNd": _simple(_gather_nd),
    "GatherV2": _simple(_gather_v2),
    "Reshape": _simple(lambda x, shape: x.reshape([int(s) for s in shape.tolist()])),
    "ExpandDims": _simple(lambda x, axis: x.unsqueeze(int(axis))),
    "Squeeze": _with_attr(_squeeze),
    "Pack": _with_attr(_pack),
    "Unpack": _with_attr(lambda a, x: torch.unbind(x, dim=a.get("axis", 0))),
    "ConcatV2": _simple(lambda *xs: torch.cat(xs[:-1], dim=int(xs[-1]))),
    "Split": _with_attr(lambda a, axis, x: torch.chunk(x, a["num_split"], dim=int(axis))),
    "StridedSlice": _strided_slice,
    "Pad": _simple(_pad),
    "PadV2": _simple(_pad),
    "Shape": _simple(lambda x: torch.tensor(x.shape, dtype=torch.int32)),
    "Size": _simple(lambda x: torch.tensor(x.numel(), dtype=torch.int32)),
    "Range": _with_attr(lambda a, s, e, d: torch.arange(s.item(), e.item(), d.item(), dtype=_DTYPES[a.get("Tidx", "DT_INT32")])),
    "Tile": _simple(lambda x, m: x.repeat(*[int(v) for v in m.tolist()])),
    "Fill": _simple(lambda dims, v: torch.full([int(d) for d in dims.tolist()], v.item(), dtype=v.dtype)),
}

# Ops whose output for a batch of N equals the N single-sample outputs stacked, given that their
# non-constant inputs are batched (reductions and concatenations are checked for axis 0 separately).
BATCH_SAFE_OPS = {
    "Identity", "Cast", "Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative",
    "MaxPool", "ResizeBilinear", "Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "FloorDiv", "FloorMod",
    "Maximum", "Minimum", "SquaredDifference", "Abs", "Exp", "Sqrt", "Reciprocal", "Sigmoid", "Relu", "Relu6",
    "Conv2DBackpropInput", "DepthToSpace", "Prelu", "MatMul", "_FusedMatMul",
    "Mean", "Sum", "Max", "ConcatV2",
}  # fmt: skip

# Ops that dominate the cost; the per-sample head of a graph must contain none of them.
HEAVY_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "Conv2DBackpropInput", "MaxPool",
             "ResizeBilinear"}  # fmt: skip
