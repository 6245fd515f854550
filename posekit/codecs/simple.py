"""SIMPLE's codec (simple.txt §4): identity-free keypoint heatmaps at 1/4 (the pose branch), person boxes as
keypoint triplets (the detection branch, `corner_boxes.CornerBoxCodec`), and the grouping that turns a box
into a pose: the box's sub-region of the global heatmaps (ROIAlign), with the activations of other persons
suppressed, read as that person's keypoints.

Boxes are the extent of a person's labelled joints grown by `BOX_MARGIN` of its longer side on every side
(and at least `MIN_BOX_PAD` input pixels): they follow the joints through rotation and mosaics, where an
annotated box would not, and a keypoint model only needs the region its joints are in.

Grouping geometry (`roi_grid_to_input`): ROI pixel (i, j) of a `roi_size` (w, h) ROI of box (x1, y1, x2, y2)
is input point (x1 + i (x2 - x1) / (w - 1), y1 + j (y2 - y1) / (h - 1)), as `distill.mimicking.student_rois`
samples it. The grouping target of a person (`own_windows`) is the ROI of the predicted heatmaps times a
Gaussian window (sigma `WINDOW_SIGMAS` x the heatmap sigma) around each of its own joints: the module keeps
this person's activations as they are and suppresses everyone else's (§4.2: "reserve, not refine").
A keypoint is the ROI's argmax, then refined on the global heatmap (the 3x3 maximum around it and a
quarter-pixel step towards the higher neighbour): the ROI is coarser than the map for large persons.

Targets (`encode`, one image): "heatmaps" [K,h,w], "heatmap_weights" [K,h,w] (as the associative-embedding
codec's at 1/4), the box codec's "box_heatmaps" [3,h,w], "box_offsets" [6,h,w], "box_offset_weights" [3,h,w],
"box_weights" [1,h,w] (0 in ignore regions), and per person (padded to `max_persons`): "gt_keypoints"
[M,K,3] (input pixels), "gt_boxes" [M,4], "gt_valid" [M].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou, roi_align

from posekit.codecs.associative_embedding import AssociativeEmbeddingCodec
from posekit.codecs.corner_boxes import TOP_N, CornerBoxCodec

BOX_MARGIN = 0.1
MIN_BOX_PAD = 4.0
WINDOW_SIGMAS = 2.0
ASSIGN_IOU = 0.5  # a decoded box takes a person's GT when their boxes overlap this much (Mask R-CNN's rule)


def keypoint_boxes(keypoints: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """xyxy boxes [N,4] around the labelled joints of keypoints [N,K,3] (see the module doc), clipped to the
    input's pixel extent, and whether each person has a box of positive size [N]."""
    boxes = np.zeros((len(keypoints), 4), np.float32)
    ok = np.zeros(len(keypoints), bool)
    for n, person in enumerate(keypoints):
        xy = person[person[:, 2] > 0, :2]
        if len(xy) == 0:
            continue
        lo, hi = xy.min(0), xy.max(0)
        pad = max(BOX_MARGIN * float((hi - lo).max()), MIN_BOX_PAD)
        box = np.concatenate([lo - pad, hi + pad])
        box = np.clip(box, -0.5, [size[0] - 0.5, size[1] - 0.5, size[0] - 0.5, size[1] - 0.5])
        boxes[n], ok[n] = box, (box[2] > box[0] + 1) and (box[3] > box[1] + 1)
    return boxes, ok


def student_rois(heatmaps: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, size: tuple[int, int], stride: float
                 ) -> torch.Tensor:  # fmt: skip
    """Eq. 11: each person's part of the student heatmaps [B,K,H,W] resampled to `size` (w, h): [N,K,h,w].
    `boxes` [N,4] are xyxy in input pixels (pixel centres at integers), `batch_index` [N] their images, `stride`
    input pixels per heatmap pixel. ROI pixel (i, j) samples the heatmaps at input point
    (x1 + i (x2 - x1) / (w - 1), y1 + j (y2 - y1) / (h - 1)): the box's ends on the end pixels' centres, as the
    teacher's crop of the same box maps it (`data.topdown.affine_for_box`). One bilinear sample per ROI pixel."""
    w, h = size
    b = boxes.to(heatmaps.dtype)
    half_bin = torch.stack([(b[:, 2] - b[:, 0]) / max(w - 1, 1), (b[:, 3] - b[:, 1]) / max(h - 1, 1)], 1) / 2
    # roi_align(aligned=True) reads continuous coordinates (pixel i spans [i, i + 1)): input u = x + 0.5
    edges = torch.cat([b[:, :2] + 0.5 - half_bin, b[:, 2:] + 0.5 + half_bin], 1)
    rois = torch.cat([batch_index[:, None].to(heatmaps.dtype), edges], 1)
    return roi_align(heatmaps, rois, (h, w), spatial_scale=1.0 / stride, sampling_ratio=1, aligned=True)


def assign_ground_truth(boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = ASSIGN_IOU) -> torch.Tensor:
    """For each detected box [N,4] the index of its best-overlapping GT box [G,4] when that IoU reaches
    `iou_threshold`, else -1 (no ground truth: only the teacher's prediction is mimicked)."""
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return torch.full((len(boxes),), -1, dtype=torch.long)
    iou, index = box_iou(boxes, gt_boxes).max(1)
    return torch.where(iou >= iou_threshold, index, torch.full_like(index, -1))


def roi_grid_to_input(boxes: torch.Tensor, roi_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(origin [N,2], step [N,2]): ROI pixel (i, j) of each box is input point origin + (i, j) * step."""
    w, h = roi_size
    step = torch.stack([(boxes[:, 2] - boxes[:, 0]) / max(w - 1, 1), (boxes[:, 3] - boxes[:, 1]) / max(h - 1, 1)], 1)
    return boxes[:, :2], step


def own_windows(keypoints: torch.Tensor, boxes: torch.Tensor, roi_size: tuple[int, int], sigma_input: float) -> torch.Tensor:
    """Windows [N,K,h,w] in each box's ROI frame: a Gaussian of `sigma_input` input pixels (peak 1) around each
    of the person's labelled joints (keypoints [N,K,3], input pixels), 0 for unlabelled joints."""
    w, h = roi_size
    origin, step = roi_grid_to_input(boxes, roi_size)
    xs = origin[:, None, 0] + torch.arange(w, dtype=boxes.dtype, device=boxes.device)[None] * step[:, None, 0]  # [N,w]
    ys = origin[:, None, 1] + torch.arange(h, dtype=boxes.dtype, device=boxes.device)[None] * step[:, None, 1]  # [N,h]
    dx = (xs[:, None, :] - keypoints[:, :, None, 0]) ** 2  # [N,K,w]
    dy = (ys[:, None, :] - keypoints[:, :, None, 1]) ** 2  # [N,K,h]
    window = torch.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * sigma_input**2))
    return window * (keypoints[:, :, 2] > 0).to(window.dtype)[..., None, None]


def refine_on_map(heatmaps: torch.Tensor, xy: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints xy [N,K,2] (input pixels) moved to the largest value of the global heatmaps [K,H,W] in the
    3x3 heatmap pixels around them, plus a quarter pixel towards the higher neighbour; (xy, values) [N,K]."""
    k, hh, ww = heatmaps.shape
    q = torch.round((xy + 0.5) / stride - 0.5).long()
    qx, qy = q[..., 0].clamp(0, ww - 1), q[..., 1].clamp(0, hh - 1)
    chan = torch.arange(k)[None].expand_as(qx)
    best, bx, by = torch.full(qx.shape, -torch.inf), qx.clone(), qy.clone()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x, y = (qx + dx).clamp(0, ww - 1), (qy + dy).clamp(0, hh - 1)
            v = heatmaps[chan, y, x]
            better = v > best
            best, bx, by = torch.where(better, v, best), torch.where(better, x, bx), torch.where(better, y, by)
    left, right = heatmaps[chan, by, (bx - 1).clamp(0, ww - 1)], heatmaps[chan, by, (bx + 1).clamp(0, ww - 1)]
    up, down = heatmaps[chan, (by - 1).clamp(0, hh - 1), bx], heatmaps[chan, (by + 1).clamp(0, hh - 1), bx]
    fx = bx.float() + 0.25 * torch.sign(right - left) * ((bx > 0) & (bx < ww - 1))
    fy = by.float() + 0.25 * torch.sign(down - up) * ((by > 0) & (by < hh - 1))
    return torch.stack([fx, fy], -1) * stride + (stride - 1) / 2, best


def roi_keypoints(grouped: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The argmax of each grouped ROI map [N,K,h,w] as input points [N,K,2], and the maxima [N,K]."""
    n, k, h, w = grouped.shape
    value, index = grouped.flatten(2).max(-1)
    origin, step = roi_grid_to_input(boxes, (w, h))
    ij = torch.stack([index % w, index // w], -1).to(boxes.dtype)
    return origin[:, None] + ij * step[:, None], value


@dataclass
class SimpleCodec:
    input_size: tuple[int, int]  # (w, h)
    stride: int
    num_keypoints: int
    sigma: float = 2.0
    max_persons: int = 30
    roi_size: tuple[int, int] = (24, 32)  # grouping ROI (w, h)
    top_n: int = TOP_N
    box_threshold: float = 0.1  # centre peaks that can keep a box (φ_det)
    heatmaps: AssociativeEmbeddingCodec = field(init=False, repr=False)
    boxes: CornerBoxCodec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.heatmaps = AssociativeEmbeddingCodec(tuple(self.input_size), (self.stride,), self.num_keypoints, sigma=self.sigma,
                                                  max_persons=self.max_persons)  # fmt: skip
        self.boxes = CornerBoxCodec(tuple(self.input_size), self.stride, top_n=self.top_n)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    @property
    def window_sigma(self) -> float:
        """The grouping window's sigma in input pixels."""
        return WINDOW_SIGMAS * self.sigma * self.stride

    def encode(self, keypoints: np.ndarray, missing: np.ndarray, ignore: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints [N,K,3] in input pixels (v > 0 labelled), missing [N,K], ignore [h,w] bool at
        `heatmap_size` -> targets (see the module doc)."""
        s = self.stride
        heat = self.heatmaps.encode(keypoints, missing, ignore)
        people = np.asarray([p for p in keypoints if (p[:, 2] > 0).any()], np.float32).reshape(-1, self.num_keypoints, 3)
        boxes, ok = keypoint_boxes(people, self.input_size)
        out = {"heatmaps": heat[f"heatmaps_s{s}"], "heatmap_weights": heat[f"heatmap_weights_s{s}"]}
        out.update(self.boxes.encode(boxes[ok]))
        out["box_weights"] = (~ignore).astype(np.float32)[None]
        m = self.max_persons
        gt_kp, gt_box, valid = np.zeros((m, self.num_keypoints, 3), np.float32), np.zeros((m, 4), np.float32), np.zeros(m, np.float32)
        people, boxes = people[ok][:m], boxes[ok][:m]
        gt_kp[: len(people)], gt_box[: len(people)], valid[: len(people)] = people, boxes, 1.0
        out.update(gt_keypoints=gt_kp, gt_boxes=gt_box, gt_valid=valid)
        return out

    def decode(self, heatmaps: torch.Tensor, boxes: torch.Tensor, box_scores: torch.Tensor, grouped: torch.Tensor
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Global heatmaps [K,H,W], decoded boxes [N,4] with scores [N] and their grouped ROI maps [N,K,h,w] ->
        keypoints [N,K,2] (input pixels), keypoint scores [N,K] (the global heatmap at the refined
        keypoint: the grouped ROI only chooses which peak) and box scores [N]."""
        if len(boxes) == 0:
            k = self.num_keypoints
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        xy, _ = roi_keypoints(grouped.float(), boxes.float())
        xy, value = refine_on_map(heatmaps.float(), xy, self.stride)
        return xy.numpy().astype(np.float32), value.clamp(0, 1).numpy().astype(np.float32), box_scores.numpy().astype(np.float32)

    def oracle_decode(self, targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode the targets as a perfect network would predict them: boxes from the rendered triplet maps, and
        for each box the grouping target of the GT person it is assigned to (its own joints' activations of the
        target heatmaps), empty maps for a box with none."""
        heat = torch.from_numpy(targets["heatmaps"])
        boxes, scores = self.boxes.decode(torch.from_numpy(targets["box_heatmaps"]), torch.from_numpy(targets["box_offsets"]),
                                          self.box_threshold)  # fmt: skip
        valid = targets["gt_valid"] > 0
        gt_kp, gt_boxes = torch.from_numpy(targets["gt_keypoints"][valid]), torch.from_numpy(targets["gt_boxes"][valid])
        rois = student_rois(heat[None], boxes, torch.zeros(len(boxes), dtype=torch.long), self.roi_size, self.stride)
        assigned = assign_ground_truth(boxes, gt_boxes)
        person = gt_kp[assigned.clamp_min(0)] if len(gt_kp) else torch.zeros(len(boxes), self.num_keypoints, 3)
        windows = own_windows(person, boxes, self.roi_size, self.window_sigma) * (assigned >= 0).float()[:, None, None, None]
        return self.decode(heat, boxes, scores, rois * windows)

