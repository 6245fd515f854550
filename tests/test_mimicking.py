"""SIMPLE's network mimicking: the student ROIs sample the heatmaps where the teacher's crop of the same box
looks, Mask R-CNN-style GT assignment, identity-initialised adapters, and losses that train only the student
and the adapters."""

from __future__ import annotations

import numpy as np
import torch

from posekit.distill.mimicking import HeatmapAdapter, assign_ground_truth, mimicking_loss, student_rois


def _gaussian_map(w: int, h: int, cx: float, cy: float, sigma: float = 1.5) -> torch.Tensor:
    xs, ys = torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32)
    return torch.exp(-((xs[None] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * sigma**2))


def test_student_roi_samples_where_the_teachers_crop_looks() -> None:
    """A linear ramp in x and y sampled exactly: ROI pixel (i, j) reads input point x1 + i (x2-x1)/(w-1)."""
    stride, hw, ww = 4, 40, 50
    xs = (torch.arange(ww, dtype=torch.float32) + 0.5) * stride - 0.5  # heatmap pixel centres in input pixels
    ys = (torch.arange(hw, dtype=torch.float32) + 0.5) * stride - 0.5
    maps = torch.stack([xs[None].expand(hw, -1), ys[:, None].expand(-1, ww)])[None]  # channel 0: x, channel 1: y
    box = torch.tensor([[37.0, 21.0, 141.0, 133.0]])
    rois = student_rois(maps, box, torch.zeros(1, dtype=torch.long), (12, 16), stride)
    assert rois.shape == (1, 2, 16, 12)
    want_x = 37.0 + torch.arange(12) * (141.0 - 37.0) / 11
    want_y = 21.0 + torch.arange(16) * (133.0 - 21.0) / 15
    torch.testing.assert_close(rois[0, 0, 5], want_x, atol=1e-3, rtol=0)
    torch.testing.assert_close(rois[0, 1, :, 3], want_y, atol=1e-3, rtol=0)


def test_a_keypoint_peak_lands_where_the_teacher_would_see_it() -> None:
    stride, person = 4, np.array([60.0, 50.0])  # a joint at input (60, 50)
    heat = _gaussian_map(64, 48, (60 + 0.5) / stride - 0.5, (50 + 0.5) / stride - 0.5)[None, None]
    box = torch.tensor([[20.0, 10.0, 120.0, 170.0]])
    roi = student_rois(heat, box, torch.zeros(1, dtype=torch.long), (48, 64), stride)[0, 0]
    j, i = divmod(int(roi.argmax()), 48)
    want = (person - [20, 10]) * [(48 - 1) / 100, (64 - 1) / 160]
    assert abs(i - want[0]) <= 0.5 + 1e-6 and abs(j - want[1]) <= 0.5 + 1e-6


def test_ground_truth_assignment_is_mask_rcnn_style() -> None:
    gt = torch.tensor([[0.0, 0, 100, 200], [300, 0, 400, 200]])
    boxes = torch.tensor([[5.0, 5, 105, 195], [290, 10, 390, 210], [150, 0, 250, 200], [60, 0, 160, 200]])
    assert assign_ground_truth(boxes, gt).tolist() == [0, 1, -1, -1]  # the last overlaps GT 0 by IoU 0.25
    assert assign_ground_truth(boxes, gt[:0]).tolist() == [-1] * 4


def test_mimicking_loss_trains_the_student_and_adapters_only() -> None:
    g = torch.Generator().manual_seed(0)
    k = 3
    teacher_gt, teacher_pred = torch.rand(2, k, 8, 6, generator=g), torch.rand(2, k, 8, 6, generator=g)
    a1, a2 = HeatmapAdapter(k), HeatmapAdapter(k)
    torch.testing.assert_close(a1(teacher_gt), teacher_gt)  # identity at the start
    has_gt = torch.tensor([True, False])
    # a student equal to both targets where they apply: zero loss
    student = teacher_pred.clone()
    student[0] = teacher_gt[0]
    loss = mimicking_loss(student, teacher_gt, teacher_pred, a1, a2, has_gt)
    assert float(loss["mimic_gt"].detach()) == 0.0 and float(loss["mimic_pred"].detach()) > 0  # person 0 differs from its prediction
    # eq. 14/15's normalisation: one map off by 1 at every pixel of 8x6 -> 48 / (N K)
    off = teacher_pred.clone()
    off[1, 2] += 1.0
    assert abs(float(mimicking_loss(off, teacher_gt, teacher_pred, a1, a2, torch.tensor([False, False]))["mimic_pred"].detach()) - 48 / 6) < 1e-5
    # gradients reach the student and both adapters, never the teacher's maps
    student = torch.rand(2, k, 8, 6, generator=g, requires_grad=True)
    teacher_gt.requires_grad_(), teacher_pred.requires_grad_()
    total = sum(mimicking_loss(student, teacher_gt, teacher_pred, a1, a2, has_gt).values())
    total.backward()
    assert student.grad is not None and a1.conv.weight.grad is not None and a2.conv.weight.grad is not None
    assert teacher_gt.grad is None and teacher_pred.grad is None
