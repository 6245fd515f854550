"""The heads of MoveNet MultiPose as starting points for the whole-image families' heads.

MultiPose computes, from its stride-4 FPN output (24 channels, `GraphTrunk("movenet_multipose_fpn")`), six
heads of one shape (depthwise 3x3, 1x1 to 96, ReLU, 1x1 out: `heads.SeparableHead`):
- `kpt_heatmap_0`: 17 person-agnostic keypoint heatmaps (sigmoid);
- `center_0`: the person-centre heatmap (sigmoid);
- `kpt_regress_0`: centre-to-joint displacements, 17 x (dy, dx) in stride-4 cells;
- `kpt_offset_0`: each joint's sub-cell offset, 17 x (dy, dx);
- `box_scale_0`, `box_offset_0`: box size and centre offset.
`graph_head` builds a `SeparableHead` holding one of them, its output channels reordered where a family
orders them otherwise (posekit's displacements are (dx, dy) per joint).
"""

from __future__ import annotations

import torch

from posekit.models.heads import SeparableHead
from posekit.zoo.store import load_graph

MULTIPOSE = "movenet_multipose"
GRAPH_OF = {MULTIPOSE: "movenet-multipose"}
TRUNK_OF = {MULTIPOSE: "movenet_multipose_fpn"}
SIGMOID_START = -4.6  # a random-init sigmoid heatmap head's output bias: maps start near 0.01, not 0.5 everywhere
HEAD_NODES = {"heatmap": "kpt_heatmap_0", "centre": "center_0", "regress": "kpt_regress_0", "offset": "kpt_offset_0"}
_PREFIX = "StatefulPartitionedCall/"


def yx_to_xy(num_keypoints: int) -> list[int]:
    """Channel order turning 17 x (dy, dx) into 17 x (dx, dy)."""
    return [2 * j + (1 - c) for j in range(num_keypoints) for c in (0, 1)]


def check_init_heads(init_heads: str, backbone: str, head_shape: str, own_shape: str) -> None:
    """`model.head_shape` is the family's own (`own_shape`) or the graph's ("separable"), and `model.init_heads`
    names a graph whose trunk the model uses and whose head shape it takes; the error says what to change."""
    if head_shape not in (own_shape, "separable") or (init_heads and head_shape != "separable"):
        raise ValueError(f"model.head_shape {head_shape!r}: use {own_shape} or separable (model.init_heads needs separable, the graph's shape)")
    if init_heads and init_heads not in TRUNK_OF:
        raise ValueError(f"model.init_heads {init_heads!r}: use one of {', '.join(TRUNK_OF)} or leave it empty")
    if init_heads and backbone != TRUNK_OF[init_heads]:
        raise ValueError(
            f"model.init_heads {init_heads} needs model.backbone {TRUNK_OF[init_heads]} (the heads read its features), not {backbone}"
        )


def graph_head_weights(graph_name: str, head: str) -> dict[str, torch.Tensor]:
    """A head's weights as a `SeparableHead` state dict (torch layouts), read from the graph's constants."""
    graph = load_graph(graph_name)
    scope = _PREFIX + HEAD_NODES[head] + "/"
    nodes = [n for n in graph.nodes if n.name.startswith(scope)]
    depthwise = next(n for n in nodes if n.op == "DepthwiseConv2dNative")
    pointwise = next(n for n in nodes if n.op == "_FusedConv2D" and n.inputs[0] == depthwise.name)
    final = next(n for n in nodes if n.op == "_FusedConv2D" and n.inputs[0] == pointwise.name)

    def const(ref: str) -> torch.Tensor:
        return torch.from_numpy(graph.consts[ref].copy()).float()

    return {
        "depthwise.weight": const(depthwise.inputs[1]).permute(2, 3, 0, 1).contiguous(),  # [3,3,C,1] -> [C,1,3,3]
        "pointwise.weight": const(pointwise.inputs[1]).permute(3, 2, 0, 1).contiguous(),  # [1,1,C,H] -> [H,C,1,1]
        "pointwise.bias": const(pointwise.inputs[2]),
        "final_layer.weight": const(final.inputs[1]).permute(3, 2, 0, 1).contiguous(),
        "final_layer.bias": const(final.inputs[2]),
    }


def graph_head(init_heads: str, head: str, in_channels: int, out_channels: int, order: list[int] | None = None,
               cold_bias: float | None = None) -> SeparableHead:  # fmt: skip
    """A `SeparableHead` of the graph's shape; with `init_heads` set, holding that graph's `head` weights
    (output channels taken in `order`) and marked `warm_started` (`PoseModel.pretrained_prefixes` finds it);
    without, randomly initialised as any posekit head, its output bias `cold_bias` when given (a sigmoid
    output's starting logit)."""
    module = SeparableHead(in_channels, out_channels)
    if not init_heads:
        if cold_bias is not None:
            torch.nn.init.constant_(module.final_layer.bias, cold_bias)
        return module
    state = graph_head_weights(GRAPH_OF[init_heads], head)
    if order is not None:
        state["final_layer.weight"], state["final_layer.bias"] = state["final_layer.weight"][order], state["final_layer.bias"][order]
    if state["final_layer.weight"].shape[0] != out_channels or state["depthwise.weight"].shape[0] != in_channels:
        raise ValueError(f"{init_heads} head {head!r} maps {state['depthwise.weight'].shape[0]} -> "
                         f"{state['final_layer.weight'].shape[0]} channels, the model needs {in_channels} -> {out_channels}")  # fmt: skip
    module.load_state_dict(state)
    module.warm_started = True
    return module
