"""DistilPose's Simulated Heatmaps (distilpose.md §3.2-3.3): a regression student predicts, per keypoint, its
coordinates (μx, μy), two deviations (σx, σy) and a confidence s; the anisotropic Gaussian they make is
compared with the heatmap teacher's map (L_SH, eq. 5), and s with the teacher's value at the rounded
coordinates (L_CS, eq. 6). L_reg is the smooth-L1 task loss with invisible and out-of-map keypoints filtered.

Coordinates are in heatmap pixels, pixel q's centre at q (the codecs' convention); the teacher's maps and
the student's predictions must share that frame. Every loss is a plain differentiable function of tensors.

The simulated map peaks at 1 (eq. 2), so against a teacher whose peaks are lower (MoveNet's heatmaps are
probabilities) L_SH is minimised by a narrower Gaussian than the teacher's: with peak 0.8, σ comes out 0.89 of
the teacher's width (`tests/test_simulated_heatmaps.py`). s still learns the teacher's value (L_CS).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# eq. 7's weights for the two Simulated-Heatmap terms (α3, α4) and the two token terms (α1, α2)
ALPHA_SH, ALPHA_CS = 1.0, 1e-2
ALPHA_KT = ALPHA_VT = 5e-4


def simulated_heatmaps(mu: torch.Tensor, sigma: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Maps [N,K,height,width] of exp(-((x-μx)²/σx² + (y-μy)²/σy²)/2) (eq. 2: peak 1, no normalising
    constant) from centres `mu` [N,K,2] and deviations `sigma` [N,K,2] (> 0), both in heatmap pixels."""
    xs = torch.arange(width, dtype=mu.dtype, device=mu.device)
    ys = torch.arange(height, dtype=mu.dtype, device=mu.device)
    gx = torch.exp(-0.5 * ((xs - mu[..., 0:1]) / sigma[..., 0:1]) ** 2)  # [N,K,W]
    gy = torch.exp(-0.5 * ((ys - mu[..., 1:2]) / sigma[..., 1:2]) ** 2)  # [N,K,H]
    return gy[..., :, None] * gx[..., None, :]  # separable: the axes are the deviations' directions


def _keypoint_mean(per_keypoint: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Sum over keypoints (eqs. 5-6 sum over k), mean over the batch; `weights` [N,K] masks keypoints."""
    if weights is not None:
        per_keypoint = per_keypoint * weights
    return per_keypoint.sum(1).mean()


def simulated_heatmap_loss(mu: torch.Tensor, sigma: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_SH = Σ_k MSE(H_k, H_Tk) (eq. 5), averaged over the batch; `teacher` [N,K,h,w]."""
    h, w = teacher.shape[-2:]
    simulated = simulated_heatmaps(mu, sigma, w, h)
    return _keypoint_mean(((simulated - teacher) ** 2).mean((-2, -1)), weights)


def teacher_value_at(teacher: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """H_T([x], [y]) [N,K]: the teacher's map at the rounded coordinates; 0 where they fall off the map."""
    h, w = teacher.shape[-2:]
    q = torch.round(mu.detach()).long()
    inside = (q[..., 0] >= 0) & (q[..., 0] < w) & (q[..., 1] >= 0) & (q[..., 1] < h)
    flat = (q[..., 1].clamp(0, h - 1) * w + q[..., 0].clamp(0, w - 1)).unsqueeze(-1)
    values = teacher.flatten(-2).gather(-1, flat).squeeze(-1)
    return torch.where(inside, values, torch.zeros_like(values))


def confidence_loss(mu: torch.Tensor, confidence: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_CS = Σ_k |H_Tk([x_k], [y_k]) - s_k| (eq. 6), averaged over the batch. Rounding has no gradient: only
    the confidences `confidence` [N,K] learn from it."""
    return _keypoint_mean((teacher_value_at(teacher, mu) - confidence).abs(), weights)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """L_reg: smooth-L1 between predicted and GT coordinates [N,K,2], over the keypoints that are visible
    (`visible` [N,K] > 0) with both the GT and the prediction on the [0, width) x [0, height) map (§3.3);
    mean over the keypoints kept (0 when none is)."""

    def on_map(p: torch.Tensor) -> torch.Tensor:
        return (p[..., 0] >= 0) & (p[..., 0] < width) & (p[..., 1] >= 0) & (p[..., 1] < height)

    keep = (visible > 0) & on_map(target) & on_map(pred.detach())
    per_keypoint = F.smooth_l1_loss(pred, target, reduction="none").sum(-1)
    return (per_keypoint * keep).sum() / keep.sum().clamp_min(1)
