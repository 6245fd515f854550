"""Known answers for the TF op semantics the importer must reproduce (beyond the end-to-end parity test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posekit.zoo.graph_module import TfjsGraphModule
from posekit.zoo.tfjs_format import GraphNode, TfjsGraph, read_weights
from posekit.zoo.tfjs_ops import tf_same_padding


def run_graph(nodes: list[GraphNode], consts: dict[str, np.ndarray], *inputs: torch.Tensor, outputs=("out",)):
    graph = TfjsGraph(nodes, consts, [n.name for n in nodes if n.op == "Placeholder"], list(outputs))
    return TfjsGraphModule(graph)(*inputs)


def const(name: str) -> GraphNode:
    return GraphNode(name, "Const", [])


def test_same_padding_puts_the_odd_pixel_at_the_end() -> None:
    assert tf_same_padding(256, 3, 2) == (0, 1)
    assert tf_same_padding(255, 3, 2) == (1, 1)
    assert tf_same_padding(10, 5, 1) == (2, 2)


def test_strided_conv_same_matches_manual_tf_result() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4, 1)
    w = np.ones((3, 3, 1, 1), np.float32)
    nodes = [GraphNode("x", "Placeholder", []), const("w"),
             GraphNode("out", "Conv2D", ["x", "w"], {"padding": "SAME", "strides": [1, 2, 2, 1], "data_format": "NHWC"})]  # fmt: skip
    out = run_graph(nodes, {"w": w}, x)[0, :, :, 0]
    # TF pads (0, 1): windows start at rows/cols 0 and 2
    xs = x[0, :, :, 0].numpy()
    padded = np.pad(xs, ((0, 1), (0, 1)))
    expected = [[padded[r : r + 3, c : c + 3].sum() for c in (0, 2)] for r in (0, 2)]
    np.testing.assert_allclose(out.numpy(), expected)


def test_depthwise_multiplier_channel_order() -> None:
    x = torch.tensor([[[[1.0, 10.0]]]])  # 1x1 image, 2 channels
    w = np.array([1, 2, 3, 4], np.float32).reshape(1, 1, 2, 2)  # [kh, kw, C, M]
    nodes = [GraphNode("x", "Placeholder", []), const("w"),
             GraphNode("out", "DepthwiseConv2dNative", ["x", "w"], {"padding": "VALID", "strides": [1, 1, 1, 1]})]  # fmt: skip
    # TF output channel c*M + m = x[c] * w[c, m]
    np.testing.assert_allclose(run_graph(nodes, {"w": w}, x).reshape(-1).numpy(), [1, 2, 30, 40])


@pytest.mark.parametrize(("align", "half", "expected"), [
    (False, False, [0.0, 0.5, 1.0, 1.0]),     # legacy: src = dst * 0.5
    (True, False, [0.0, 1 / 3, 2 / 3, 1.0]),  # corners aligned
    (False, True, [0.0, 0.25, 0.75, 1.0]),    # half-pixel centres
])  # fmt: skip
def test_resize_bilinear_modes(align: bool, half: bool, expected: list[float]) -> None:
    x = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)
    nodes = [GraphNode("x", "Placeholder", []), const("size"),
             GraphNode("out", "ResizeBilinear", ["x", "size"], {"align_corners": align, "half_pixel_centers": half})]  # fmt: skip
    out = run_graph(nodes, {"size": np.array([1, 4], np.int32)}, x)
    np.testing.assert_allclose(out.reshape(-1).numpy(), expected, atol=1e-6)


def test_strided_slice_masks() -> None:
    x = torch.arange(24).reshape(2, 3, 4)
    nodes = [GraphNode("x", "Placeholder", []), const("b"), const("e"), const("s"),
             GraphNode("out", "StridedSlice", ["x", "b", "e", "s"], {"begin_mask": 1, "end_mask": 1, "new_axis_mask": 2, "shrink_axis_mask": 4})]  # fmt: skip
    arrays = {"b": np.array([0, 0, 1], np.int32), "e": np.array([0, 0, 2], np.int32), "s": np.array([1, 1, 1], np.int32)}
    out = run_graph(nodes, arrays, x)
    assert torch.equal(out, x[:, None, 1])  # x[:, newaxis, 1]


def test_pack_reshapes_like_the_first_input_and_topk_keeps_tie_order() -> None:
    nodes = [GraphNode("x", "Placeholder", []), const("one"), const("k"),
             GraphNode("out", "Pack", ["x", "one"], {"axis": 0}),
             GraphNode("top", "TopKV2", ["x2", "k"]), GraphNode("x2", "Placeholder", [])]  # fmt: skip
    graph_out = run_graph(nodes, {"one": np.array([7], np.int32), "k": np.array(3, np.int32)},
                          torch.tensor(5, dtype=torch.int32), torch.tensor([1.0, 3.0, 3.0, 3.0]), outputs=("out", "top:1"))  # fmt: skip
    assert graph_out[0].tolist() == [5, 7]
    assert graph_out[1].tolist() == [1, 2, 3]


def test_quantized_weights_are_dequantized(tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(np.array([0, 2, 255], np.uint8).tobytes() + np.array([1.5, -2.0], np.float16).tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5}},
        {"name": "b", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
    ]}]  # fmt: skip
    w = read_weights(manifest, tmp_path)
    np.testing.assert_allclose(w["a"], [-1.0, 0.0, 126.5])
    np.testing.assert_allclose(w["b"], [1.5, -2.0])
    assert w["a"].dtype == np.float32


def test_pad_orders_dimensions_like_tf() -> None:
    x = torch.ones(1, 2, 3, 1)
    nodes = [GraphNode("x", "Placeholder", []), const("p"), const("v"), GraphNode("out", "PadV2", ["x", "p", "v"])]
    paddings = np.array([[0, 0], [1, 0], [0, 2], [0, 0]], np.int32)  # one row on top, two columns on the right
    out = run_graph(nodes, {"p": paddings, "v": np.array(-1.0, np.float32)}, x)[0, :, :, 0]
    assert out.tolist() == [[-1, -1, -1, -1, -1], [1, 1, 1, -1, -1], [1, 1, 1, -1, -1]]


@pytest.mark.parametrize("size", [8, 7])
def test_conv2d_backprop_input_is_the_gradient_of_the_same_conv(size: int) -> None:
    """Conv2DBackpropInput(shape, W, dy) is d(conv2d_SAME(x, W))/dx applied to dy: autograd is the oracle."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 3, 2, 4, generator=g)  # HWIO of the forward conv: 2 -> 4 channels
    out = -(-size // 2)
    dy = torch.randn(1, out, out, 4, generator=g)
    x = torch.zeros(1, size, size, 2, requires_grad=True)
    top, bottom = tf_same_padding(size, 3, 2)
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(x.permute(0, 3, 1, 2), (top, bottom, top, bottom)), w.permute(3, 2, 0, 1), stride=2)
    (y.permute(0, 2, 3, 1) * dy).sum().backward()
    nodes = [GraphNode("dy", "Placeholder", []), const("shape"), const("w"),
             GraphNode("out", "Conv2DBackpropInput", ["shape", "w", "dy"], {"padding": "SAME", "strides": [1, 2, 2, 1], "data_format": "NHWC"})]  # fmt: skip
    got = run_graph(nodes, {"shape": np.array([1, size, size, 2], np.int32), "w": w.numpy()}, dy)
    torch.testing.assert_close(got, x.grad, atol=1e-5, rtol=1e-5)


def test_depth_to_space_moves_channel_blocks_to_pixels_in_tf_order() -> None:
    x = torch.arange(8, dtype=torch.float32).reshape(1, 1, 1, 8)  # 2x2 blocks of 2 channels
    nodes = [GraphNode("x", "Placeholder", []), GraphNode("out", "DepthToSpace", ["x"], {"block_size": 2, "data_format": "NHWC"})]
    out = run_graph(nodes, {}, x)
    # TF: out[i, j, c] = in[(i*2 + j)*2 + c]
    assert out.shape == (1, 2, 2, 2)
    assert out[0, :, :, 0].tolist() == [[0, 2], [4, 6]] and out[0, :, :, 1].tolist() == [[1, 3], [5, 7]]


def test_fused_matmul_adds_the_bias_and_prelu_uses_its_slopes() -> None:
    a = torch.tensor([[1.0, -2.0]])
    nodes = [GraphNode("a", "Placeholder", []), const("w"), const("b"), const("alpha"),
             GraphNode("mm", "_FusedMatMul", ["a", "w", "b"], {"fused_ops": ["BiasAdd"]}),
             GraphNode("out", "Prelu", ["mm", "alpha"])]  # fmt: skip
    consts = {"w": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), "b": np.array([0.5, 0.5], np.float32), "alpha": np.array([0.1, 0.2], np.float32)}
    out = run_graph(nodes, consts, a)
    torch.testing.assert_close(out, torch.tensor([[1.5, -1.5 * 0.2]]))
