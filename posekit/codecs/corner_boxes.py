"""Person boxes as keypoint triplets (CenterNet, Duan et al. 2019, as SIMPLE's detection branch uses them,
simple.txt §4.1): each box is a top-left corner, a bottom-right corner and a centre, each a peak in its own
heatmap with a sub-pixel offset. Decoding pairs the top-N corners into N² proposals and keeps a proposal only
when a centre peak lies in its central region; its score is the mean of the three points' scores. Each centre
supports one proposal (its best, see `decode`): on clean maps, a corner of one person paired with another's
holds a third person's centre often enough to matter.

Coordinates as in `center_offset`: input pixel centres at integers, input x <-> heatmap (x + 0.5) / s - 0.5.
Targets (`encode`, one image): "box_heatmaps" [3,h,w] (top-left, bottom-right, centre; Gaussians whose
radius keeps IoU >= `min_overlap` for a corner that far off, max over boxes) and "box_offsets" [6,h,w] with
"box_offset_weights" [3,h,w] (1 at each point's pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

TOP_N = 32  # corners and centres kept per map (SIMPLE's N)
CENTRAL_REGION_SMALL, CENTRAL_REGION_LARGE, LARGE_BOX = 3, 5, 150.0  # CenterNet: n = 3 below 150 px, else 5
TIE_BREAK = 1e-3  # weight of the centre's offset from the proposal's middle: orders equal scores only


def corner_radius(width: float, height: float, min_overlap: float = 0.7) -> float:
    """The largest r (heatmap pixels) such that moving the corners of a width x height box by r, in the worst
    of three ways (both outwards, both inwards, both the same way), keeps IoU >= `min_overlap`; by bisection."""

    def worst_iou(r: float) -> float:
        w, h = width, height
        grown = w * h / ((w + 2 * r) * (h + 2 * r))
        shrunk = max(w - 2 * r, 0) * max(h - 2 * r, 0) / (w * h)
        inter = max(w - r, 0) * max(h - r, 0)
        shifted = inter / (2 * w * h - inter)
        return min(grown, shrunk, shifted)

    lo, hi = 0.0, max(width, height)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if worst_iou(mid) >= min_overlap else (lo, mid)
    return lo


def central_region(boxes: np.ndarray | torch.Tensor, n: np.ndarray | torch.Tensor):  # noqa: ANN201
    """The central n-th of xyxy boxes (CenterNet's: the middle 1/n of each side), same type as `boxes`."""
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    cx1, cx2 = ((n + 1) * x1 + (n - 1) * x2) / (2 * n), ((n - 1) * x1 + (n + 1) * x2) / (2 * n)
    cy1, cy2 = ((n + 1) * y1 + (n - 1) * y2) / (2 * n), ((n - 1) * y1 + (n + 1) * y2) / (2 * n)
    return cx1, cy1, cx2, cy2


@dataclass
class CornerBoxCodec:
    input_size: tuple[int, int]  # (w, h)
    stride: int = 4
    min_overlap: float = 0.7
    top_n: int = TOP_N

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def to_heatmap(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float32) + 0.5) / self.stride - 0.5

    def to_input(self, xy: np.ndarray | torch.Tensor):  # noqa: ANN201
        return (xy + 0.5) * self.stride - 0.5

    def encode(self, boxes: np.ndarray) -> dict[str, np.ndarray]:
        """xyxy boxes [N,4] in input pixels -> targets (see the module doc)."""
        w, h = self.heatmap_size
        heat = np.zeros((3, h, w), np.float32)
        offsets = np.zeros((6, h, w), np.float32)
        weights = np.zeros((3, h, w), np.float32)
        xs, ys = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
        for box in np.asarray(boxes, np.float32).reshape(-1, 4):
            tl, br = self.to_heatmap(box[:2]), self.to_heatmap(box[2:])
            sigma = max(corner_radius(*(br - tl), self.min_overlap), 0.0) / 3 + 1e-3  # a radius of 3 sigma
            for t, p in enumerate((tl, br, (tl + br) / 2)):
                # the nearest pixel on the map: a box touching the image border has its corner half a pixel off
                # the map, and the offset carries the rest
                q = np.clip(np.round(p), 0, [w - 1, h - 1]).astype(int)
                heat[t] = np.maximum(heat[t], np.exp(-((xs - q[0]) ** 2 + (ys - q[1]) ** 2) / (2 * sigma**2)))
                offsets[2 * t : 2 * t + 2, q[1], q[0]] = p - q
                weights[t, q[1], q[0]] = 1.0
        return {"box_heatmaps": heat, "box_offsets": offsets, "box_offset_weights": weights}

    def _peaks(self, heat: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-N local maxima (3x3) of one map [h,w]: scores [N] and sub-pixel heatmap positions [N,2]."""
        h, w = heat.shape
        local = heat == F.max_pool2d(heat[None, None], 3, stride=1, padding=1)[0, 0]
        scores, index = torch.where(local, heat, torch.zeros_like(heat)).flatten().topk(min(self.top_n, h * w))
        y, x = index // w, index % w
        xy = torch.stack([x, y], 1).float() + offsets[:, y, x].T
        return scores, xy

    def decode(self, heatmaps: torch.Tensor, offsets: torch.Tensor, threshold: float = 0.1, nms_iou: float = 0.7
               ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """heatmaps [3,h,w], offsets [6,h,w] -> boxes [M,4] xyxy in input pixels and scores [M], best first."""
        (tl_s, tl), (br_s, br), (ct_s, ct) = (self._peaks(heatmaps[t], offsets[2 * t : 2 * t + 2]) for t in range(3))
        tl, br, ct = self.to_input(tl), self.to_input(br), self.to_input(ct)
        ct, ct_s = ct[ct_s >= threshold], ct_s[ct_s >= threshold]
        boxes = torch.cat([tl[:, None].expand(-1, len(br), -1), br[None].expand(len(tl), -1, -1)], -1).reshape(-1, 4)
        corner_score = ((tl_s[:, None] + br_s[None]) / 2).reshape(-1)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, corner_score = boxes[valid], corner_score[valid]
        if len(boxes) == 0 or len(ct) == 0:
            return torch.zeros((0, 4)), torch.zeros(0)
        large = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= LARGE_BOX
        n = torch.where(large, torch.tensor(float(CENTRAL_REGION_LARGE)), torch.tensor(float(CENTRAL_REGION_SMALL)))
        cx1, cy1, cx2, cy2 = central_region(boxes, n)
        inside = (ct[None, :, 0] >= cx1[:, None]) & (ct[None, :, 0] <= cx2[:, None]) & (ct[None, :, 1] >= cy1[:, None]) & (ct[None, :, 1] <= cy2[:, None])
        # every centre supports one box: of the proposals holding it in their central region, the best scored,
        # ties (common when maps are clean) broken by how close it is to the proposal's own centre
        score = (2 * corner_score[:, None] + ct_s[None]) / 3  # the mean of the three points [P,C]
        middle = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
        off_centre = ((ct[None] - middle[:, None]).abs() / size[:, None]).sum(-1)  # [P,C]
        rank = torch.where(inside, score - TIE_BREAK * off_centre, torch.full_like(score, -np.inf))
        best = rank.argmax(0)  # per centre
        found = torch.isfinite(rank.max(0).values)
        boxes, scores = boxes[best[found]], score[best[found], torch.arange(len(ct))[found]]
        keep = nms(boxes, scores, nms_iou)
        return boxes[keep], scores[keep]
