"""Heads warm-started from MoveNet MultiPose (`model.init_heads: movenet_multipose`): at step 0 each family's
heads compute the graph's own intermediate outputs on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.data.specs import get_spec
from posekit.data.transforms import normalise, stretch
from posekit.models.higherhrnet import HigherHRNetConfig, HigherHRNetModel
from posekit.models.posedet import PoseDetConfig, PoseDetModel
from posekit.models.simple import SimpleConfig, SimpleModel
from posekit.pipeline.readers import read_image
from posekit.zoo.graph_module import TfjsGraphModule
from posekit.zoo.store import load_graph

pytestmark = [pytest.mark.weights, pytest.mark.data]
IMAGES = ("000000037666.jpg", "000000463557.jpg")  # coco-mini images with people
SPEC = get_spec("coco17")
_P = "StatefulPartitionedCall/"
NODES = {"heatmap": _P + "Sigmoid_1", "centre": _P + "Sigmoid", "regress": _P + "kpt_regress_0/conv2d_8/BiasAdd"}
WARM = {"backbone": "movenet_multipose_fpn", "head_shape": "separable", "init_heads": "movenet_multipose"}


@pytest.fixture(scope="module")
def graph_outputs(coco_mini: Path, weights) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """(normalised 256x256 image [1,3,H,W], the graph's heads on it [1,C,h,w]) per image."""
    graph = TfjsGraphModule(load_graph("movenet-multipose"), outputs=list(NODES.values()))
    out = []
    for file in IMAGES:
        image = stretch(read_image(coco_mini / "train2017" / file), 256, 256)[0]
        with torch.no_grad():
            refs = graph(torch.from_numpy(image[None]).to(torch.int32))
        out.append((torch.from_numpy(normalise(image))[None], {k: r.permute(0, 3, 1, 2) for k, r in zip(NODES, refs)}))
    return out


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the values' size (displacements reach ~40 cells)."""
    return ((a - b).abs() / b.abs().clamp_min(1.0)).max().item()


def test_higherhrnet_heatmaps_start_as_the_graphs(graph_outputs) -> None:
    model = HigherHRNetModel(SPEC, (256, 256), HigherHRNetConfig(**WARM, neck_channels=16, num_deconvs=1, num_basic_blocks=1)).eval()
    for x, ref in graph_outputs:
        with torch.no_grad():
            heatmaps, tags, *_ = model(x)
        assert ref["heatmap"].max() > 0.5  # people here: the comparison is not between two empty maps
        assert _close(heatmaps, ref["heatmap"]) <= 1e-5
        assert tags.shape == heatmaps.shape


def test_posedet_coarse_poses_and_scores_start_as_the_graphs(graph_outputs) -> None:
    model = PoseDetModel(SPEC, (256, 256), PoseDetConfig(**WARM, strides=(4,), channels=16)).eval()
    for x, ref in graph_outputs:
        with torch.no_grad():
            logits, coarse, refined = model(x)
            heat = model.head.heatmaps(model._levels(x)[0])
        n, k, (h, w) = 1, SPEC.num_keypoints, ref["regress"].shape[-2:]
        want = ref["regress"].reshape(n, k, 2, h * w).permute(0, 3, 1, 2).flip(-1)  # (dy, dx) per joint -> [N,L,K,(dx, dy)]
        # as the graph reports keypoints, in fractions of the image side: float32 rounding through the trunk and
        # the 96-wide head leaves ~3e-5 cells (displacements reach ~40 cells), i.e. ~5e-7 of the side
        assert (coarse - want).abs().max().item() / w <= 1e-5
        assert _close(torch.sigmoid(logits), ref["centre"].flatten(1)) <= 1e-5
        assert _close(heat, ref["heatmap"]) <= 1e-5
        assert refined.abs().max() == 0  # the refinement starts from the coarse pose


def test_simple_pose_heatmaps_and_centres_start_as_the_graphs(graph_outputs) -> None:
    cfg = SimpleConfig(**WARM, features="output", channels=16, group_channels=8)
    model = SimpleModel(SPEC, (256, 256), cfg).eval()
    for x, ref in graph_outputs:
        with torch.no_grad():
            heatmaps, box, _ = model(x)
        assert _close(heatmaps, ref["heatmap"]) <= 1e-5
        assert _close(torch.sigmoid(box[:, 2:3]), ref["centre"]) <= 1e-5


def test_random_separable_heads_differ_and_bad_settings_are_refused(graph_outputs) -> None:
    x, ref = graph_outputs[0]
    cold = HigherHRNetModel(
        SPEC, (256, 256), HigherHRNetConfig(backbone="movenet_multipose_fpn", head_shape="separable", num_deconvs=0)
    ).eval()
    with torch.no_grad():
        heatmaps = cold(x)[0]
    assert float(heatmaps.max()) < 0.05 < float(ref["heatmap"].max())  # cold heads start near 0.01 everywhere
    with pytest.raises(ValueError, match="head_shape"):
        HigherHRNetModel(SPEC, (256, 256), HigherHRNetConfig(init_heads="movenet_multipose", backbone="movenet_multipose_fpn"))
    with pytest.raises(ValueError, match="backbone"):
        SimpleModel(
            SPEC,
            (256, 256),
            SimpleConfig(head_shape="separable", init_heads="movenet_multipose", features="output", backbone="movenet_thunder_fpn"),
        )
    with pytest.raises(ValueError, match="strides"):
        PoseDetModel(SPEC, (256, 256), PoseDetConfig(**WARM))
    assert np.isfinite(heatmaps.numpy()).all()


def test_warm_heads_can_train_at_the_trunks_rate(graph_outputs) -> None:
    """`train.warm_heads_lr: trunk` gives warm-started heads `backbone_lr_mult` x the rate, as the trunk; the new
    heads (tags) keep the full rate. The default, `full`, measured better (docs/warm_start.md)."""
    from types import SimpleNamespace

    from posekit.engine.trainer import build_optimizer

    model = HigherHRNetModel(SPEC, (256, 256), HigherHRNetConfig(**WARM, num_deconvs=0))
    opt = build_optimizer(model, SimpleNamespace(lr=1e-3, backbone_lr_mult=0.1, optimizer="adam", weight_decay=0.0, warm_heads_lr="trunk"))
    full, slow = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-4)
    assert all(id(p) in slow for p in model.heatmap_head.parameters()) and all(id(p) in full for p in model.tag_head.parameters())
    cold = HigherHRNetModel(SPEC, (256, 256), HigherHRNetConfig(backbone="movenet_multipose_fpn", head_shape="separable", num_deconvs=0))
    assert not any(id(p) in {id(q) for q in build_optimizer(cold, SimpleNamespace(lr=1e-3, backbone_lr_mult=0.1, optimizer="adam",
                   weight_decay=0.0, warm_heads_lr="trunk")).param_groups[1]["params"]} for p in cold.heatmap_head.parameters())  # fmt: skip
    full_rate = build_optimizer(model, SimpleNamespace(lr=1e-3, backbone_lr_mult=0.1, optimizer="adam", weight_decay=0.0, warm_heads_lr="full"))
    assert all(id(p) in {id(q) for q in full_rate.param_groups[0]["params"]} for p in model.heatmap_head.parameters())


def test_backbone_lr_mult_zero_freezes_the_trunk() -> None:
    """`train.backbone_lr_mult: 0` freezes the trunk: no gradient is computed through it and a step leaves it
    unchanged, while the heads train (PoseDet's warm heads need it, docs/warm_start.md)."""
    from types import SimpleNamespace

    from posekit.engine.trainer import build_optimizer

    model = HigherHRNetModel(SPEC, (256, 256), HigherHRNetConfig(backbone="movenet_multipose_fpn", head_shape="separable", num_deconvs=0))
    opt = build_optimizer(model, SimpleNamespace(lr=1e-2, backbone_lr_mult=0.0, optimizer="adam", weight_decay=0.0, warm_heads_lr="full"))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    trunk = [p.detach().clone() for p in model.backbone.parameters()]
    heads = [p.detach().clone() for p in model.tag_head.parameters()]
    out = model.backbone(torch.rand(1, 3, 256, 256))
    assert not out.requires_grad  # the trunk's forward builds no graph
    model.tag_head(out).square().mean().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(trunk, model.backbone.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(heads, model.tag_head.parameters()))
