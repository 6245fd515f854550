"""The pose-pretrained trunks of the imported TF.js graphs as ordinary trainable backbones.

No ImageNet weights can be downloaded here, but the npm package's graphs hold convolutional trunks
trained for pose (MoveNet Thunder, MoveNet MultiPose: MobileNetV2 + FPN) and person detection
(CenterNet: MobileNetV3 + its upsampling head). `GraphTrunk` runs the part of a graph between the
image and its feature nodes with torch ops, its convolution weights and biases turned into
`nn.Parameter`s (BatchNorm is already folded into them by the TF.js converter), so the features equal
the graph's own intermediate nodes and gradients reach every weight.

Input: NCHW float images normalised like every posekit dataset (`transforms.normalise`); the trunk
maps them back to the 0..255 RGB the graph expects. The graphs' batch-1 preprocessing (unstack /
resize / stack) is skipped by starting at `entry`, so any batch size and any input size that is a
multiple of `size_divisor` works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posekit.data.transforms import MEAN, STD
from posekit.zoo.graph_module import _source, needed_nodes, store_output
from posekit.zoo.registry import graph_entry
from posekit.zoo.store import load_graph
from posekit.zoo.tfjs_ops import CONV_OPS, OPS, conv_spec, run_conv

_MOVENET = "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/"
_CENTERNET = "tower_0/CenternetHead/"


@dataclass(frozen=True)
class TrunkSpec:
    graph: str  # weights name in the zoo
    entry: str  # node whose value is the float NHWC 0..255 RGB image
    features: tuple[tuple[int, str], ...]  # (stride, node), finest first
    nominal: int  # the input side the graph was exported for (its constant resize sizes assume it)
    description: str


TRUNKS: dict[str, TrunkSpec] = {
    "movenet_thunder_fpn": TrunkSpec(
        "movenet-thunder", "StatefulPartitionedCall/stack",
        ((4, _MOVENET + "re_lu_2/Relu"), (8, _MOVENET + "re_lu_1/Relu"), (16, _MOVENET + "re_lu/Relu"), (32, _MOVENET + "model/out_relu/Relu6")),
        256, "MoveNet Thunder MobileNetV2 (x1.75) + FPN, pose-trained; stride-4 output 24 channels",
    ),
    "movenet_lightning_fpn": TrunkSpec(
        "movenet-lightning", "StatefulPartitionedCall/stack",
        ((4, _MOVENET + "re_lu_2/Relu"), (8, _MOVENET + "re_lu_1/Relu"), (16, _MOVENET + "re_lu/Relu"), (32, _MOVENET + "model/out_relu/Relu6")),
        192, "MoveNet Lightning MobileNetV2 (x1.0) + FPN, pose-trained; stride-4 output 24 channels",
    ),
    "movenet_multipose_fpn": TrunkSpec(
        "movenet-multipose", "StatefulPartitionedCall/Cast",
        ((4, _MOVENET + "re_lu_2/Relu"), (8, _MOVENET + "re_lu_1/Relu"), (16, _MOVENET + "re_lu/Relu"), (32, _MOVENET + "model/out_relu/Relu6")),
        256, "MoveNet MultiPose MobileNetV2 (x1.5) + FPN, multi-person pose-trained; stride-4 output 24 channels",
    ),
    "centernet_mbv3": TrunkSpec(
        "centernet", "tower_0/images",
        ((4, _CENTERNET + "Relu_2"), (8, _CENTERNET + "Relu_1"), (16, _CENTERNET + "Relu"), (32, "tower_0/extern1/BatchNorm/FusedBatchNorm")),
        512, "CenterNet MobileNetV3 + upsampling head, COCO-detection-trained; stride-4 output 128 channels",
    ),
}  # fmt: skip


def _param_key(node: str, what: str) -> str:
    short = node.replace(_MOVENET, "").replace("StatefulPartitionedCall/", "").replace("tower_0/", "")
    return short.replace("/", "__").replace(".", "_") + "__" + what


class GraphTrunk(nn.Module):
    """A graph's trunk: `forward(x)` -> the finest feature map (NCHW); `forward_features(x)` -> all of them."""

    def __init__(self, name: str) -> None:
        super().__init__()
        spec = TRUNKS[name]
        graph_entry(spec.graph)
        graph = load_graph(spec.graph)
        by_name = {n.name: n for n in graph.nodes}
        self.spec = spec
        self.feature_nodes = [node for _, node in spec.features]
        self.feature_strides = [s for s, _ in spec.features]
        needed = needed_nodes(by_name, self.feature_nodes, spec.entry)
        consts = {n.name: torch.from_numpy(graph.consts[n.name].copy()) for n in graph.nodes if n.op == "Const" and n.name in needed}
        self._consts = consts
        self.weights = nn.ParameterDict()
        self._steps: list[tuple[str, object, list[str]]] = []
        for node in graph.nodes:
            if node.name not in needed or node.op in ("Const", "Placeholder") or node.name == spec.entry:
                continue
            refs = [_source(i) for i in node.inputs]
            lookup = (lambda r: lambda i: consts.get(r[i]) if i < len(r) else None)(refs)
            if node.op in CONV_OPS:
                cs = conv_spec(node, lookup, CONV_OPS[node.op])
                wk = _param_key(node.name, "weight")
                self.weights[wk] = nn.Parameter(cs.weight.clone())
                bk = None
                if cs.bias is not None:
                    bk = _param_key(node.name, "bias")
                    self.weights[bk] = nn.Parameter(cs.bias.clone())
                self._steps.append((node.name, ("conv", node, cs, wk, bk), refs[:1]))
            elif node.op == "ResizeBilinear" and refs[1] in consts:
                self._steps.append((node.name, ("resize", OPS[node.op](node, lookup), {}), refs))
            else:
                self._steps.append((node.name, ("op", OPS[node.op](node, lookup)), refs))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():  # one pass at the nominal size records each constant-size resize as a ratio
            self.feature_channels = [f.shape[1] for f in self.forward_features(torch.zeros(1, 3, spec.nominal, spec.nominal))]
        self.out_channels = self.feature_channels[0]
        self.stride = self.feature_strides[0]
        self.size_divisor = max(self.feature_strides)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps [N,C_i,H/s_i,W/s_i] (channels_last views) at `feature_strides`."""
        rgb = (x * self.std + self.mean).permute(0, 2, 3, 1)  # NHWC 0..255, as the graph takes it
        env: dict[str, torch.Tensor] = dict(self._consts)
        env[self.spec.entry] = rgb
        for name, step, refs in self._steps:
            if step[0] == "conv":
                _, node, cs, wk, bk = step
                env[name] = run_conv(node, cs, env[refs[0]], self.weights[wk], self.weights[bk] if bk else None)
            elif step[0] == "resize":  # constant output size in the graph: keep its ratio for any input size
                fn, ratio = step[1], step[2]
                x = env[refs[0]]
                if not ratio:
                    out = fn(x, env[refs[1]])
                    ratio["y"], ratio["x"] = out.shape[1] / x.shape[1], out.shape[2] / x.shape[2]
                # int(): under ONNX tracing shapes are tensors; an exported trunk keeps the size it was traced at
                env[name] = fn(x, torch.tensor([round(int(x.shape[1]) * ratio["y"]), round(int(x.shape[2]) * ratio["x"])]))
            else:
                store_output(env, name, step[1](*[env[r] for r in refs]))
        return [env[n].permute(0, 3, 1, 2) for n in self.feature_nodes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
