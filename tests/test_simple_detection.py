"""SIMPLE's detection branch: center and cascade corner pooling against direct loops, and the keypoint-triplet
box codec's round trip on real COCO boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from posekit.codecs.corner_boxes import CornerBoxCodec, corner_radius
from posekit.models.simple_pooling import cascade_corner_pool, center_pool, directional_max

G = torch.Generator().manual_seed(0)


def _loop_directional(x: torch.Tensor, direction: str) -> torch.Tensor:
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for y in range(h):
        for i in range(w):
            region = {"right": x[..., y, i:], "left": x[..., y, : i + 1], "down": x[..., y:, i], "up": x[..., : y + 1, i]}[direction]
            out[..., y, i] = region.amax(-1)
    return out


@pytest.mark.parametrize("direction", ["right", "left", "down", "up"])
def test_directional_max_matches_a_loop(direction: str) -> None:
    x = torch.randn(2, 3, 5, 7, generator=G)
    assert torch.equal(directional_max(x, direction), _loop_directional(x, direction))


def test_center_pool_matches_a_loop() -> None:
    h_map, v_map = torch.randn(1, 2, 4, 6, generator=G), torch.randn(1, 2, 4, 6, generator=G)
    want = torch.empty_like(h_map)
    for y in range(4):
        for x in range(6):
            want[..., y, x] = h_map[..., y, :].amax(-1) + v_map[..., :, x].amax(-1)
    assert torch.allclose(center_pool(h_map, v_map), want)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_cascade_corner_pool_matches_a_loop(corner: str) -> None:
    """Branch 1: along the first direction of the look map, added to the features, then along the second;
    branch 2 the other way round. Top-left looks right and down, bottom-right left and up."""
    f1, f2, l1, l2 = (torch.randn(1, 2, 5, 6, generator=G) for _ in range(4))
    first, second = ("right", "down") if corner == "top_left" else ("left", "up")
    want = _loop_directional(f1 + _loop_directional(l1, first), second) + _loop_directional(f2 + _loop_directional(l2, second), first)
    assert torch.allclose(cascade_corner_pool((f1, f2), (l1, l2), corner), want)
    # a single strong response below-right of a location reaches that top-left corner, not the other way
    spike = torch.zeros(1, 1, 5, 6)
    spike[..., 3, 4] = 1.0
    zero = torch.zeros_like(spike)
    pooled = cascade_corner_pool((zero, zero), (spike, spike), corner)
    assert (pooled[..., 1, 2] > 0).item() == (corner == "top_left") and (pooled[..., 4, 5] > 0).item() == (corner == "bottom_right")


def test_corner_radius_keeps_the_promised_overlap() -> None:
    r = corner_radius(40.0, 80.0, 0.7)
    w, h = 40.0, 80.0
    assert 0 < r < 20
    assert w * h / ((w + 2 * r) * (h + 2 * r)) >= 0.7 - 1e-6  # both corners outwards
    inter = (w - r) * (h - r)
    assert inter / (2 * w * h - inter) >= 0.7 - 1e-6  # both the same way
    assert min(w * h / ((w + 2.2 * r) * (h + 2.2 * r)), (w - 2.2 * r) * (h - 2.2 * r) / (w * h)) < 0.7  # and no larger radius would


@pytest.mark.data
def test_box_codec_round_trip_recovers_every_coco_mini_box(coco_mini: Path) -> None:
    """GT boxes rendered into corner and centre maps decode back to the GT boxes (IoU >= 0.95 each, no extra
    box): the codec's oracle, boxes touching the image border included."""
    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    checked = extra = 0
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
        if not anns:
            continue
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        codec = CornerBoxCodec((img["width"], img["height"]))
        targets = codec.encode(boxes)
        decoded, scores = codec.decode(torch.from_numpy(targets["box_heatmaps"]), torch.from_numpy(targets["box_offsets"]))
        assert len(decoded) and bool((scores > 0.9).all())
        best = box_iou(torch.from_numpy(boxes), decoded).max(1).values
        assert bool((best >= 0.95).all()), f"{img['file_name']}: IoU {best.min():.3f}"
        checked += len(boxes)
        extra += len(decoded) - len(boxes)
    assert checked > 150 and extra == 0
