"""SIMPLE's network mimicking (simple.txt §5, eqs. 11-15): the student's whole-image pose heatmaps are cut to
each detected person with ROIAlign at the teacher's heatmap size (eq. 11) and pulled towards the teacher's
knowledge on that person's sub-image: its ground-truth heatmaps and its predicted heatmaps, each passed
through its own convolutional adapter (eqs. 12-13), with two MSE terms (eqs. 14-15). Ground truth is assigned
to the detected boxes as Mask R-CNN assigns it to proposals (IoU >= 0.5 with the best-overlapping GT box).

Only the student and the adapters learn: the teacher's heatmaps enter detached.
"""

from __future__ import annotations

import torch
from torch import nn

from posekit.codecs.simple import assign_ground_truth, student_rois  # noqa: F401  (the ROI geometry lives with the codec)


class HeatmapAdapter(nn.Module):
    """φ_adapter: a 3x3 convolution from the teacher's K heatmaps to K, initialised to pass them through
    unchanged (the identity), so mimicking starts from the teacher's own maps."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_keypoints, num_keypoints, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[torch.arange(num_keypoints), torch.arange(num_keypoints), 1, 1] = 1.0
            self.conv.bias.zero_()

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return self.conv(heatmaps)


def _per_map_mse(student: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/N)(1/K) Σ_n Σ_k w_nk ||S_nk - T_nk||²₂ over maps [N,K,h,w] (eqs. 14-15)."""
    if student.numel() == 0:
        return student.sum()
    per_map = ((student - target) ** 2).sum((-2, -1))
    return (per_map * weights).sum() / (student.shape[0] * student.shape[1])


def mimicking_loss(student: torch.Tensor, teacher_gt: torch.Tensor, teacher_pred: torch.Tensor, adapter_gt: HeatmapAdapter,
                   adapter_pred: HeatmapAdapter, has_gt: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """L_m1 (eq. 14, against the adapted GT heatmaps of the persons that have GT: `has_gt` [N] bool) and L_m2
    (eq. 15, against the adapted predicted heatmaps) for student ROIs [N,K,h,w]."""
    k = student.shape[1]
    gt_weights = has_gt.to(student.dtype)[:, None].expand(-1, k)
    return {
        "mimic_gt": _per_map_mse(student, adapter_gt(teacher_gt.detach()), gt_weights),
        "mimic_pred": _per_map_mse(student, adapter_pred(teacher_pred.detach()), torch.ones_like(gt_weights)),
    }
